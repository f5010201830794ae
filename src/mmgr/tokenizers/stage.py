"""`tokenize` stage: fit a tokenizer on a run's features of one modality (or import a published SID table) and
write `tokenizers/<modality>.{json,safetensors}`, `codes/<modality>.safetensors`, the diagnostics
(`tokenizers/<modality>.diagnostics.{json,png}`). The run's token vocabulary is built from these codes by
`mmgr train` (see `mmgr.engines.method`)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

import numpy as np

from mmgr.config import Config, TokenizerConfig
from mmgr.encoders.features import load_features
from mmgr.errors import MmgrError
from mmgr.io import write_json_atomic
from mmgr.rundir import RunDir
from mmgr.tokenizers.base import TOKENIZERS, SemanticTokenizer
from mmgr.tokenizers.codes import ModalityCodes
from mmgr.tokenizers.collisions import append_level, collision_rate
from mmgr.tokenizers.diagnostics import plot
from mmgr.tokenizers.pipeline import tokenize_features

CODES_DIR, TOKENIZERS_DIR = "codes", "tokenizers"


def make_tokenizer(cfg: TokenizerConfig, seed: int) -> SemanticTokenizer:
    return TOKENIZERS.get(cfg.method).from_settings(cfg, seed)


def fit_settings(cfg: TokenizerConfig) -> dict[str, Any]:
    """The settings that decide fitted codes (recorded with them, so a pipeline knows when to refit)."""
    return cfg.model_dump(exclude={"tables", "table_align"})


def tokenize_run(run: RunDir, modality: str, config: Config) -> dict[str, Any]:
    """Fit, resolve collisions, diagnose, save; returns the diagnostics report."""
    fingerprint = _fingerprint(run)
    features = load_features(run.path, modality, fingerprint)
    tokenizer = make_tokenizer(config.tokenizer, config.seed)
    start = time.perf_counter()
    codes, report = tokenize_features(features, tokenizer, config.tokenizer.collisions)
    report["fit_seconds"] = round(time.perf_counter() - start, 3)
    tokenizer.save(run.path / TOKENIZERS_DIR / modality)
    _save(run, codes, report, fingerprint, f"{tokenizer.name} on {features.model_id}")
    run.record(f"tokenize.{modality}", {**_summary(report), "settings": fit_settings(config.tokenizer)},
               config=config.model_dump(mode="json"))
    return report


def import_codes(run: RunDir, modality: str, table: Path, align: Literal["item_id", "row"],
                 force: bool = False) -> dict[str, Any]:
    """Bring a published SID table (LC-Rec index.json) as this run's codes for `modality`.

    The table must cover exactly the run's catalog (see `read_index`); existing codes of `modality` are replaced
    only with `force`. Nothing is written when the table is refused."""
    from mmgr.data.dataset import Dataset
    from mmgr.tokenizers.external import read_index

    fingerprint = _fingerprint(run)
    existing = run.path / CODES_DIR / f"{modality}.safetensors"
    if existing.exists() and not force:
        source = run.manifest()["stages"].get(f"tokenize.{modality}", {}).get("source", "a fitted tokenizer")
        raise MmgrError(f"{existing} already holds {modality} codes (from {source}); pass --force to replace them")
    dataset = Dataset.load(run.path)
    raw = read_index(table, dataset.items["item_id"].to_pylist(), align, dataset.source_indices())
    sizes = [int(raw[:, level].max()) + 1 for level in range(raw.shape[1])]
    resolved, extra = append_level(raw, capacity=1)
    colliding = int(round(collision_rate(raw) * len(raw)))
    report = {"source": str(table), "align": align, "items": int(len(raw)), "levels": raw.shape[1],
              "codebook_sizes": sizes,
              "codebook_sizes_from": "the largest code seen at each level + 1 (a table states no codebook sizes)",
              "collision_level": f"appended: level {raw.shape[1] + 1} of size {extra} numbers the {colliding} items "
                                 "that share their tuple with another",
              "collision_rate_before": collision_rate(raw), "collision_rate_after": collision_rate(resolved),
              "distinct_tuples_before": int(len({tuple(r) for r in raw.tolist()})),
              "utilisation": [float(len(np.unique(raw[:, lv])) / sizes[lv]) for lv in range(raw.shape[1])]}
    codes = ModalityCodes(modality, resolved, [*sizes, extra], np.zeros(len(raw), dtype=bool),
                          {"tokenizer": "imported", "source": str(table), "collisions": "append"})
    _save(run, codes, report, fingerprint, f"imported {table.name}", with_plot=False)
    run.record(f"tokenize.{modality}", _summary(report))
    return report


def load_codes(run: RunDir) -> dict[str, ModalityCodes]:
    fingerprint = _fingerprint(run)
    folder = run.path / CODES_DIR
    codes = {p.stem: ModalityCodes.load(p, fingerprint) for p in sorted(folder.glob("*.safetensors"))}
    if not codes:
        raise MmgrError(f"{folder}: no codes; run `mmgr tokenize` first")
    return codes


def _save(run: RunDir, codes: ModalityCodes, report: dict[str, Any], fingerprint: str, title: str,
          with_plot: bool = True) -> None:
    codes.save(run.path / CODES_DIR / f"{codes.modality}.safetensors", fingerprint)
    write_json_atomic(run.path / TOKENIZERS_DIR / f"{codes.modality}.diagnostics.json", report)
    if with_plot:
        plot(report, run.path / TOKENIZERS_DIR / f"{codes.modality}.diagnostics.png", f"{codes.modality}: {title}")


def _fingerprint(run: RunDir) -> str:
    manifest = run.manifest()
    if "dataset" not in manifest:
        raise MmgrError(f"{run.path}: no dataset; run `mmgr data import` first")
    return manifest["dataset"]["fingerprint"]


def _summary(report: dict[str, Any]) -> dict[str, Any]:
    keys = ("tokenizer", "collisions", "items", "levels", "codebook_sizes", "codebook_sizes_from", "collision_level",
            "collision_rate_before",
            "collision_rate_after", "utilisation", "reconstruction_cosine", "fit_seconds", "warnings", "source",
            "align")
    return {k: report[k] for k in keys if k in report}
