"""`mmgr run`: one recipe from data to results in one run directory.

data import (unless the run has it) -> generated item texts the recipe reads (image captions, interest tags: for the
text encoder's fields and for text objectives) -> features of every modality the method's codes need -> codes
(fitted, or a published table from `tokenizer.tables`) -> train -> evaluate. Stages whose outputs exist and match
the recipe are reused; a trained model and its evaluation are reused (read, never rewritten) when the settings that
decide them are unchanged. A multimodal recipe on data that lacks a modality (Amazon Beauty has no images) falls
back to the modalities the data has, says so, and records the fallback in the manifest.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mmgr.config import Config, read_recorded, sections_of
from mmgr.data.dataset import Dataset
from mmgr.errors import MmgrError
from mmgr.rundir import RunDir

FEATURES_OF = {"text": ("text",), "image": ("image",), "fused": ("text", "image", "fused")}
TRAINING_SECTIONS = ("seed", "data", "split", "encoders", "tokenizer", "model", "training")
EVALUATION_SECTIONS = (*TRAINING_SECTIONS, "decoding")


def run_recipe(config: Config, out: Path, progress: bool = True,
               say: Callable[[str], None] = print) -> dict[str, Any]:
    """Every stage of `config` in run directory `out`; returns {"train": summary, "results": results.json}."""
    from mmgr.engines.base import engine, evaluate_run, train_run

    run = _data(config, out, say)
    before = run.manifest().get("config")
    dataset = Dataset.load(run.path, run.manifest()["dataset"]["name"])
    config, fallback = fit_to_data(config, dataset)
    if fallback:
        say(f"note: {fallback}")
    run.record("pipeline", {"fallback": fallback, "modalities": config.model.modalities,
                            "layout": config.model.layout}, config=config.model_dump(mode="json"))
    ensure_generated(run, config, dataset, progress, say)
    if engine(config).needs_codes:
        for modality in config.model.modalities:
            ensure_codes(run, modality, config, progress, say)
    trained = reused(run, "train", config, TRAINING_SECTIONS, before, say) or \
        finished_stage(run, "train", config, TRAINING_SECTIONS, lambda: train_run(run, config, progress))
    results = reused(run, "evaluate", config, EVALUATION_SECTIONS, before, say) or \
        finished_stage(run, "evaluate", config, EVALUATION_SECTIONS, lambda: evaluate_run(run, config, progress))
    return {"train": trained, "results": results}


def finished_run(config: Config, out: Path) -> bool:
    """Whether `out` holds `config`'s run trained and evaluated with these settings: what `run_recipe` would reuse
    whole. Reads only."""
    run = RunDir(out)
    if not run.exists() or not (out / "results.json").is_file():
        return False
    manifest = run.manifest()
    config, _ = fit_to_data(config, Dataset.load(run.path, manifest["dataset"]["name"]))
    return trained_and_evaluated_with(manifest, config)


def finished_record(config: Config, record: Path) -> bool:
    """Whether `record` (a run's manifest and results without its data: `report/records.py`) holds `config`'s run
    trained and evaluated with these settings. The modalities the data provides are read from the recorded dataset
    statistics. Reads only."""
    run = RunDir(record)
    if not run.exists() or not (record / "results.json").is_file():
        return False
    manifest = run.manifest()
    dataset = manifest["dataset"]
    has = {m: dataset["stats"].get(f"items_with_{m}", 0) > 0 for m in ("text", "image")}
    config, _ = fit_to_modalities(config, dataset["name"], has)
    return trained_and_evaluated_with(manifest, config)


def trained_and_evaluated_with(manifest: dict[str, Any], config: Config) -> bool:
    """Whether the run of `manifest` was trained and evaluated with `config`'s settings."""
    return all(made_with(manifest["stages"].get(f"pipeline.{stage}"), manifest.get("config"), config, sections)
               for stage, sections in (("train", TRAINING_SECTIONS), ("evaluate", EVALUATION_SECTIONS)))


def settings_digest(settings: dict[str, Any]) -> str:
    """sha256 of recorded settings (JSON values)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def reused(run: RunDir, stage: str, config: Config, sections: tuple[str, ...], before: dict[str, Any] | None,
           say: Callable[[str], None]) -> dict[str, Any] | None:
    """A finished stage's recorded output when it was made with these settings (read, never rewritten; a record that
    matched through the manifest's earlier config gains the settings themselves)."""
    stages = run.manifest()["stages"]
    if stage not in stages or (stage == "evaluate" and not (run.path / "results.json").is_file()):
        return None
    record = stages.get(f"pipeline.{stage}")
    if not made_with(record, before, config, sections):
        return None
    if record is None or record.get("settings") is None:
        # matched through the manifest's config, which this invocation has rewritten: keep the settings themselves
        settings = sections_of(config, sections)
        run.record(f"pipeline.{stage}", {"settings_sha256": settings_digest(settings), "settings": settings})
    say(f"{stage}: reusing the finished stage (same settings)")
    return json.loads((run.path / "results.json").read_text()) if stage == "evaluate" else stages[stage]


def made_with(record: dict[str, Any] | None, before: dict[str, Any] | None, config: Config,
              sections: tuple[str, ...]) -> bool:
    """Whether a stage recorded as `record` was made with `config`'s `sections`: its recorded settings, read today
    (`config_migrations`), equal them. Stages recorded only by their digest are matched through the config the run's
    manifest held before this invocation (`before`) when its sections have that digest; runs made before stages
    were recorded at all, by that whole config."""
    if record is None:
        recorded = before
        sections = tuple(Config.model_fields)
    elif record.get("settings") is not None:
        recorded = record["settings"]
    else:
        held = {key: before[key] for key in sections if key in before} if before else None
        recorded = held if held is not None and record["settings_sha256"] == settings_digest(held) else None
    read = read_recorded(recorded) if recorded is not None else None
    return read is not None and sections_of(read, sections) == sections_of(config, sections)


def finished_stage(run: RunDir, stage: str, config: Config, sections: tuple[str, ...],
                   work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run a stage and then record the settings it was made with (cleared first: a killed stage is never reused)."""
    run.record(f"pipeline.{stage}", {"settings_sha256": None, "settings": None})
    output = work()
    settings = sections_of(config, sections)
    run.record(f"pipeline.{stage}", {"settings_sha256": settings_digest(settings), "settings": settings})
    return output


def fit_to_data(config: Config, dataset: Dataset) -> tuple[Config, str | None]:
    """The recipe restricted to the modalities the data (or a published table) provides, and why, if it was."""
    raw = {m: bool(dataset.items[f"has_{m}"].to_numpy().any()) for m in ("text", "image")}
    return fit_to_modalities(config, dataset.name, raw)


def fit_to_modalities(config: Config, name: str, raw: dict[str, bool]) -> tuple[Config, str | None]:
    """`fit_to_data` for data named `name` where some item has each modality of `raw` (text, image) that is True."""
    tables = config.tokenizer.tables
    has = {"text": raw["text"] or "text" in tables, "image": raw["image"] or "image" in tables,
           "fused": (raw["text"] and raw["image"]) or "fused" in tables}      # fusion needs raw features
    wanted = config.model.modalities
    kept: list[str] = []
    for modality in wanted:
        if has.get(modality, True):
            kept.append(modality)
        elif modality == "fused" and has["text"]:       # early fusion without images is the text SID
            kept.append("text")
    kept = list(dict.fromkeys(kept)) or (["text"] if has["text"] else [])
    if kept == wanted:
        return config, None
    if not kept:
        raise MmgrError(f"{name} has none of the modalities {wanted} (no text, no images, no SID tables)")
    model = {"modalities": kept}
    training = {}
    if len(kept) == 1:
        from mmgr.objectives.base import OBJECTIVES

        model.update(layout="single", switch_tokens=False)
        training.update(alignment=config.training.alignment.model_copy(update={"objective": "none"}))
        if OBJECTIVES.get(config.training.objective).min_modalities > 1:
            training.update(objective="next-item")
    lacking = ", ".join(m if m != "fused" else "images to fuse" for m in wanted if not has.get(m, True))
    reason = (f"{name} has no {lacking} (no item has it and no SID table is given): the recipe's "
              f"{'+'.join(wanted)} {config.model.layout} method falls back to {'+'.join(kept)}"
              f"{' (single SID, no alignment): the text-only result' if len(kept) == 1 else ''}"
              f"{'; objective ' + config.training.objective + ' -> next-item' if training.get('objective') else ''}")
    return config.model_copy(update={
        "model": config.model.model_copy(update=model),
        "training": config.training.model_copy(update=training)}), reason


def generated_texts(config: Config) -> list[str]:
    """The generated item texts (`caption`, `interests`) the recipe reads, in the order they are made (interest
    mining reads the captions)."""
    from mmgr.engines.method import text_fields

    wanted = set(config.encoders.text.fields) if {"text", "fused"} & set(config.model.modalities) else set()
    wanted |= {"caption" if field == "visdesc" else field for field in text_fields(config)}
    return [name for name in ("caption", "interests") if name in wanted]


def ensure_generated(run: RunDir, config: Config, dataset: Dataset, progress: bool,
                     say: Callable[[str], None]) -> None:
    """Captions and interest tags the recipe reads, generated once (kept when the run has them)."""
    from mmgr.encoders.stage import encode_run, is_current

    for name in generated_texts(config):
        if is_current(run, name, config):
            continue
        if name == "caption" and not dataset.items["has_image"].to_numpy().any():
            say(f"note: {dataset.name} has no images: no image captions (visual-description tasks drop out)")
            continue
        backend = config.encoders.captions.backend if name == "caption" else config.encoders.interests.backend
        say(f"features {name}: generating ({backend} backend)")
        encode_run(run, name, config, progress)


def ensure_codes(run: RunDir, modality: str, config: Config, progress: bool, say: Callable[[str], None]) -> None:
    """The run's codes for `modality` as the recipe asks: kept when they match, else imported or fitted."""
    from mmgr.encoders.stage import encode_run, is_current
    from mmgr.tokenizers.stage import fit_settings, import_codes, tokenize_run

    stages = run.manifest()["stages"]
    done = stages.get(f"tokenize.{modality}", {})
    present = (run.path / "codes" / f"{modality}.safetensors").is_file()
    table = config.tokenizer.tables.get(modality)
    if table is not None:
        align = config.tokenizer.table_align
        if not (present and done.get("source") == str(table) and done.get("align", align) == align):
            # the recipe names another table (or alignment) than the run's codes came from: replace them
            say(f"codes {modality}: importing {table}")
            import_codes(run, modality, Path(table), align, force=True)
        return
    stale = [needed for needed in FEATURES_OF.get(modality, (modality,)) if not is_current(run, needed, config)]
    if present and not stale and done.get("settings") == fit_settings(config.tokenizer):
        return
    for needed in stale:
        say(f"features {needed}: encoding")
        encode_run(run, needed, config, progress)
    say(f"codes {modality}: fitting {config.tokenizer.method}")
    tokenize_run(run, modality, config)


def _data(config: Config, out: Path, say: Callable[[str], None]) -> RunDir:
    from mmgr.data.importer import import_into_run

    run = RunDir(out)
    if not run.exists():
        say(f"data: importing {config.data.format} {config.data.path or ''}".rstrip())
        return import_into_run(config, out)[0]
    recorded = run.manifest()["config"]["data"]
    if recorded != config.data.model_dump(mode="json"):
        raise MmgrError(f"{out} holds other data ({recorded.get('format')} {recorded.get('path')}); choose another "
                        "--out or the recipe of that data")
    return run
