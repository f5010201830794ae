"""`encode` stage: compute one modality's features (or captions / interest tags) for a run's catalog.

Writes `features/<modality>.safetensors` (text, image, fused) or `features/captions.parquet` /
`features/interests.parquet` (item_id + generated text), and records a summary in the manifest.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from mmgr.config import Config, EncodersConfig
from mmgr.data.dataset import Dataset
from mmgr.encoders.base import encode_items
from mmgr.encoders.cache import TextCache, VectorCache, default_cache_dir
from mmgr.encoders.features import FEATURES_DIR, load_features, save_features, unknown_modality
from mmgr.errors import MmgrError
from mmgr.io import write_parquet_atomic
from mmgr.rundir import RunDir

MODALITIES: tuple[str, ...] = ("text", "image", "fused", "caption", "interests")
GENERATED = {"caption": "captions.parquet", "interests": "interests.parquet"}


def encode_run(run: RunDir, modality: str, config: Config, progress: bool = True) -> dict[str, Any]:
    """Compute `modality` for the run's items; returns (and records) the summary."""
    if modality not in MODALITIES:
        raise MmgrError(unknown_modality(modality, MODALITIES))
    manifest = run.manifest()
    if "dataset" not in manifest:
        raise MmgrError(f"{run.path}: no dataset; run `mmgr data import` first")
    fingerprint = manifest["dataset"]["fingerprint"]
    dataset = Dataset.load(run.path, manifest["dataset"]["name"])
    require_inputs(run, modality, items_with_generated_text(run, dataset.items), config)
    cache_root = Path(config.encoders.cache_dir) if config.encoders.cache_dir else default_cache_dir()
    start = time.perf_counter()
    if modality in GENERATED:
        info = _generate(run, modality, dataset, config, cache_root, progress)
    else:
        info = _vectors(run, modality, dataset, config, cache_root, fingerprint, progress)
    info["wall_seconds"] = round(time.perf_counter() - start, 3)
    info["settings"] = feature_settings(modality, config)
    run.record(f"encode.{modality}", info, config=config.model_dump(mode="json"))
    return info


def feature_settings(modality: str, config: Config) -> dict[str, Any]:
    """The settings a modality's features (or generated texts) are made with: features made with others are stale."""
    enc = config.encoders
    fields = set(enc.text.fields)
    text = ("text", *(["captions"] if fields & {"caption", "interests"} else []),
            *(["interests"] if "interests" in fields else []))
    sections = {"text": text, "image": ("image",), "caption": ("captions", "image"),
                "interests": ("interests", "captions"), "fused": ("fusion", *text, "image")}
    return {name: getattr(enc, name).model_dump(mode="json") for name in dict.fromkeys(sections[modality])}


def is_current(run: RunDir, modality: str, config: Config) -> bool:
    """Whether the run holds `modality`'s features made with the recipe's settings (runs that predate the record
    of settings count as current)."""
    path = run.path / FEATURES_DIR / GENERATED.get(modality, f"{modality}.safetensors")
    done = run.manifest()["stages"].get(f"encode.{modality}", {})
    return path.is_file() and done.get("settings", feature_settings(modality, config)) == \
        feature_settings(modality, config)


def require_inputs(run: RunDir, modality: str, items: pa.Table, config: Config) -> None:
    """Refuse to encode a modality that no item has (the features would be all-missing rows), before any model
    loads. Items lacking it while others have it are masked and counted as usual."""
    if modality == "text":
        from mmgr.encoders.text import item_texts

        cfg = config.encoders.text
        if not any(text is not None for text in item_texts(items, cfg)):
            used = f"template {cfg.template!r}" if cfg.template is not None else f"fields {', '.join(cfg.fields)}"
            raise MmgrError(f"{run.path}: no item has text to encode ({items.num_rows} items, {used} empty in "
                            "every one); choose other fields with encoders.text.fields=[...], or import the "
                            "catalog's item table (e.g. `mmgr data import ... --items FILE`)")
    elif modality in ("image", "caption"):
        from mmgr.data.images import image_inputs

        if not any(path is not None for path in image_inputs(items)):
            raise MmgrError(f"{run.path}: no item has a local image file ({items.num_rows} items, every image "
                            "missing, unreadable or a URL); import the images with `mmgr data import ... --images "
                            "DIR`")


def items_with_generated_text(run: RunDir, items: pa.Table) -> pa.Table:
    """The catalog plus `caption` / `interests` columns where those stages have run."""
    for modality, column in (("caption", "caption"), ("interests", "interests")):
        path = run.path / FEATURES_DIR / GENERATED[modality]
        if path.is_file():
            items = items.append_column(column, pq.read_table(path)[column])
    return items


def _vectors(run: RunDir, modality: str, dataset: Dataset, config: Config, cache_root: Path, fingerprint: str,
             progress: bool) -> dict[str, Any]:
    if modality == "fused":
        from mmgr.encoders.fusion import fuse

        features = fuse(load_features(run.path, "text", fingerprint), load_features(run.path, "image", fingerprint),
                        config.encoders.fusion, seed=config.seed)
    else:
        items = items_with_generated_text(run, dataset.items) if modality == "text" else dataset.items
        encoder = item_encoder(modality, config.encoders, items)
        cache = VectorCache(cache_root / "vectors" / modality)
        features = encode_items(encoder, items, cache, progress=progress)
    path = save_features(run.path, features, fingerprint)
    return {**features.info, "file": str(path.relative_to(run.path))}


def item_encoder(modality: str, encoders: EncodersConfig, items: pa.Table):
    """The text or image encoder the recipe's `encoders` section names (what `mmgr encode` and item onboarding
    use)."""
    if modality == "text":
        from mmgr.encoders.clip import PREFIX, ClipTextEncoder

        if encoders.text.model.startswith(PREFIX):
            return ClipTextEncoder(encoders.text)
        from mmgr.encoders.text import SentenceTextEncoder

        return SentenceTextEncoder(encoders.text)
    from mmgr.encoders.image_models import make_image_encoder

    return make_image_encoder(encoders.image, images=sum(items["has_image"].to_pylist()))


def _generate(run: RunDir, modality: str, dataset: Dataset, config: Config, cache_root: Path,
              progress: bool) -> dict[str, Any]:
    cache = TextCache(cache_root / "text" / modality)
    if modality == "caption":
        from mmgr.encoders.captions import caption_items, make_captioner

        captioner = make_captioner(config.encoders.captions, config.encoders.image)
        values, info = caption_items(dataset.items, captioner, cache, progress=progress)
        column = pa.array(values, pa.string())
    else:
        from mmgr.encoders.interests import make_miner, mine_interests

        items = items_with_generated_text(run, dataset.items)
        captions = items["caption"].to_pylist() if "caption" in items.column_names else None
        miner = make_miner(config.encoders.interests)
        values, info = mine_interests(dataset.items, captions, config.encoders.interests, miner, cache,
                                      progress=progress)
        column = pa.array(values, pa.list_(pa.string()))
    name = "caption" if modality == "caption" else "interests"
    path = run.path / FEATURES_DIR / GENERATED[modality]
    write_parquet_atomic(path, pa.table({"item_id": dataset.items["item_id"], name: column}))
    return {**info, "file": str(path.relative_to(run.path))}
