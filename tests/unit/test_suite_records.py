"""The committed suite summaries are their records: each row's metrics (mean and spread over seeds), budget,
convergence and paired test against the baseline, recomputed from the suite's committed run records
(`benchmarks/records/<suite>`), equal the summary's; every row and seed the summary names has its record."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmgr.report.suite import load_suite, summarize

ROOT = Path(__file__).resolve().parents[2]
RECORDED = sorted(p for p in (ROOT / "benchmarks" / "records").iterdir() if p.is_dir())
COMPARED = ("seeds", "metrics", "metrics_sd", "epochs", "samples_seen", "best_epoch", "converged", "late_gain",
            "vs_baseline")


@pytest.mark.parametrize("folder", RECORDED, ids=[p.name for p in RECORDED])
def test_a_committed_summary_is_rebuilt_from_its_records(folder):
    summary = json.loads((ROOT / "benchmarks" / "results" / f"suite-{folder.name}" / "summary.json").read_text())
    suite = load_suite(ROOT / "configs" / "suites" / f"{summary['suite']}.yaml")
    seeds = {row["name"]: row["seeds"] for row in summary["rows"]}
    records = {name: [folder / f"{name}-s{seed}" for seed in own] for name, own in seeds.items()}
    missing = [p.name for paths in records.values() for p in paths if not (p / "results.json").is_file()]
    assert not missing, f"{folder.name}: rows without their record: {missing}"
    rebuilt = summarize(suite, records, seeds, 10_000, summary["command"])
    for mine, theirs in zip(rebuilt["rows"], summary["rows"], strict=True):
        assert {k: mine[k] for k in COMPARED} == {k: theirs[k] for k in COMPARED}, mine["name"]
