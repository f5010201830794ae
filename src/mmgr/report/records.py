"""Run records: a finished run as a suite's summary and report read it, without its weights, features or data.

A record (`RECORDS/<row>-s<seed>/` of a suite, by default `benchmarks/records/<suite>/`) keeps the run's manifest
(config, dataset fingerprint and statistics, every stage's record and training history), its test results and
per-user test metrics, its training logs, its codes, its tokenizer diagnostics and analysis figures, and the synthetic
world's plan (the planted user kinds): a few hundred KB where the run directory holds megabytes of weights.
Committed, records let a suite be summarized again, and its finished rows reused, on a machine that never trained
them (`finished_record`: the settings that decide the run's training and evaluation equal the suite's for that row
and seed).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from mmgr.rundir import MANIFEST

KEPT = (MANIFEST, "results.json", "per_user_test.parquet", "logs/**/*.csv", "codes/*.safetensors",
        "tokenizers/*.diagnostics.*", "analysis/*", "raw/world.json")


def recorded_files(run: Path) -> list[Path]:
    """The files of run directory `run` that its record keeps (relative paths, sorted)."""
    return sorted({p.relative_to(run) for pattern in KEPT for p in run.glob(pattern) if p.is_file()})


def keep_record(run: Path, record: Path) -> Path:
    """Write (or replace) `record` from the finished run directory `run`, atomically: the new record is assembled
    beside it and swapped in whole, so a record is never half old, half new. Returns `record`."""
    staging, old = record.with_name(record.name + ".new"), record.with_name(record.name + ".old")
    for leftover in (staging, old):
        shutil.rmtree(leftover, ignore_errors=True)
    for relative in recorded_files(run):
        (staging / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(run / relative, staging / relative)
    if record.exists():
        record.rename(old)
    staging.rename(record)
    shutil.rmtree(old, ignore_errors=True)
    return record
