"""What the report reads from one evaluated run: its method, test metrics with confidence intervals, training
curves, tokenizer diagnostics and the analyses (PNG + JSON) present in it."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mmgr.errors import MmgrError
from mmgr.evaluation.significance import bootstrap_means
from mmgr.rundir import RunDir

METRICS = ("hr@1", "hr@5", "hr@10", "ndcg@5", "ndcg@10")
GENERATED_TEXTS = ("caption", "interests")


@dataclass
class RunSummary:
    name: str
    path: Path
    method: dict[str, Any]                              # engine, layout, modalities, objective, alignment
    dataset: dict[str, Any]                             # name, fingerprint, stats
    protocol: dict[str, Any]
    test: dict[str, float]                              # metric -> mean over test users
    intervals: dict[str, tuple[float, float]]           # metric -> 95% bootstrap interval of the mean
    users: int
    train: dict[str, Any]                               # steps, epochs, seconds, samples/s, parameters
    validation: list[dict[str, Any]]                    # per validation: epoch, step, valid_ndcg@10
    losses: list[tuple[int, float]]                     # (step, train loss)
    tokenizers: dict[str, dict[str, Any]]               # modality -> diagnostics summary
    figures: dict[str, Path] = field(default_factory=dict)   # caption -> PNG in the run
    notes: list[str] = field(default_factory=list)
    generated: dict[str, dict[str, Any]] = field(default_factory=dict)   # caption / interests -> cost of making them


def summarize_run(name: str, path: Path, resamples: int = 1000, seed: int = 0) -> RunSummary:
    """Everything the report shows of the evaluated run at `path`."""
    run = RunDir(path)
    manifest = run.manifest()
    results_file = run.path / "results.json"
    if not results_file.is_file():
        raise MmgrError(f"{run.path}: not evaluated (no results.json); run `mmgr evaluate {run.path}` first")
    per_user_file = run.path / "per_user_test.parquet"
    try:
        results = json.loads(results_file.read_text())
        per_user = pq.read_table(per_user_file, columns=list(METRICS))
    except (OSError, json.JSONDecodeError, pa.ArrowInvalid) as exc:
        raise MmgrError(f"{run.path}: its evaluation files are missing or damaged ({exc}); run `mmgr evaluate "
                        f"{run.path}` again") from None
    intervals = {m: bootstrap_interval(per_user[m].to_numpy(), resamples, seed) for m in METRICS}
    stages = manifest["stages"]
    config = manifest["config"]
    fallback = stages.get("pipeline", {}).get("fallback")
    data = {k: manifest["dataset"][k] for k in ("name", "fingerprint", "stats")}
    return RunSummary(
        name, run.path, method_of(config, stages), data,
        results["protocol"], {m: float(results["test"][m]) for m in METRICS}, intervals, int(results["test"]["users"]),
        train_facts(stages.get("train", {})), stages.get("train", {}).get("history", []),
        training_losses(run.path / "logs" / "next-item"),
        {key.split(".", 1)[1]: value for key, value in stages.items() if key.startswith("tokenize.")},
        figures_in(run.path), [f"fallback: {fallback}"] if fallback else [], generated_texts(stages))


def method_of(config: dict[str, Any], stages: dict[str, Any]) -> dict[str, Any]:
    """What a run trained: engine, layout, modalities (`item ids` for models without codes), objective, alignment and
    the codes it actually used (a fitted tokenizer's settings, or the imported table's shape)."""
    model, training = config["model"], config["training"]
    coded = [m for m in model["modalities"] if f"tokenize.{m}" in stages]
    return {"engine": model["kind"], "layout": model["layout"],
            "modalities": model["modalities"] if coded else ["item ids"],
            "objective": training["objective"], "alignment": training["alignment"],
            "tokenizer": "; ".join(codes_label(m, stages[f"tokenize.{m}"], config["tokenizer"]) for m in coded)
            or "- (item ids)"}


def codes_label(modality: str, stage: dict[str, Any], tokenizer: dict[str, Any]) -> str:
    """`text: imported 4 x 253-256 + collision level` or `text: rq-vae 3 x 256 + collision level`."""
    sizes = stage.get("codebook_sizes") or [tokenizer["codebook_size"]] * tokenizer["levels"]
    width = f"{min(sizes)}-{max(sizes)}" if min(sizes) != max(sizes) else str(sizes[0])
    source = "imported" if "source" in stage else tokenizer["method"]
    appended = "source" in stage or tokenizer["collisions"] == "append"
    return f"{modality}: {source} {len(sizes)} x {width}{' + collision level' if appended else ''}"


def generated_texts(stages: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """What generating the run's item texts (captions, interest tags) cost: items, generated vs from the cache,
    seconds, model."""
    keys = ("model_id", "items", "computed", "from_cache", "wall_seconds", "items_per_s", "empty")
    return {name: {k: stages[f"encode.{name}"][k] for k in keys if k in stages[f"encode.{name}"]}
            for name in GENERATED_TEXTS if f"encode.{name}" in stages}


def train_facts(train: dict[str, Any]) -> dict[str, Any]:
    keys = ("steps", "epochs_run", "best_epoch", "train_seconds", "samples_per_second", "parameters")
    return {key: train[key] for key in keys if key in train}


def bootstrap_interval(values: np.ndarray, resamples: int, seed: int, confidence: float = 0.95
                       ) -> tuple[float, float]:
    """Percentile interval of the mean of per-user `values` over `resamples` bootstrap resamples of users."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return (float("nan"), float("nan"))
    means = bootstrap_means(values, resamples, seed)
    tail = (1 - confidence) / 2
    return float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))


def training_losses(log_dir: Path) -> list[tuple[int, float]]:
    """(step, train loss) from the CSV logs of every invocation of the next-item stage, in step order."""
    rows: dict[int, float] = {}
    for file in sorted(log_dir.glob("csv/version_*/metrics.csv")):
        with file.open(newline="") as handle:
            for row in csv.DictReader(handle):
                if row.get("train/loss"):
                    rows[int(float(row["step"]))] = float(row["train/loss"])
    return sorted(rows.items())


def figures_in(path: Path) -> dict[str, Path]:
    """PNG figures stages left in the run: tokenizer diagnostics and analyses."""
    found = {f"tokenizer {p.name.split('.')[0]}": p for p in sorted((path / "tokenizers").glob("*.diagnostics.png"))}
    found.update({f"analysis {p.stem}": p for p in sorted((path / "analysis").glob("*.png"))})
    return found
