"""Experiments as data: `mmgr bench --suite configs/suites/NAME.yaml`.

A suite file names a dataset recipe, settings shared by every row, the rows (recipes + overrides, one line of
description, optional seeds of their own), the baseline row, the default seeds and, optionally, published numbers.
Every (row, seed) runs with `mmgr run` in `RUNS/<row>-s<seed>` and is reused when it finished with the same
settings; each finished run is recorded in `RECORDS/<row>-s<seed>` (`report/records.py`: everything below is read
from the records, not the run directories), and a record made with the same settings stands for a run this machine
lacks. `--finished-only` trains nothing and summarizes the runs and records that finished (the others listed as
`unfinished`, with what their checkpoints hold under `in_progress`). The summary (`OUT/summary.json`) gives each
row's metrics as the mean over its seeds (and their standard deviation), its budget (epochs, samples seen, training
seconds), whether it converged, and the paired bootstrap against the baseline on the users' seed-averaged metrics,
and the modality analyses of each row's first seed (`analyses`: planted user kinds, late-fusion correspondence, hits
needing both modalities, top-10 overlap, fused-SID dominance, as the runs allow);
`OUT/report.{md,html,json}` is the `mmgr bench` report of each row's first seed with a convergence table and the
analyses' tables.

Converged: the row's training ran its schedule to the end (or stopped early on patience) and validation was flat over
its last `FLAT_SHARE` of steps, in the metric the row monitored (`training.monitor`): the best validation NDCG@10
reached there exceeds the best reached before by no more than the validation's noise, the larger of `FLAT_TOLERANCE`
(relative) and one standard error of a mean of per-user NDCG over the validation users (bounded by
sqrt(m (1 - m) / users) for values in [0, 1] with mean m); the best validation loss there is below the best before
by no more than `FLAT_TOLERANCE` (relative). The improvement is reported beside (`late_gain`, a fall of the loss
counting positive). A row with fewer than two validations in either part cannot show it: not converged.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mmgr.config import load_config
from mmgr.errors import ConfigError, MmgrError
from mmgr.evaluation import published
from mmgr.evaluation.modality import analyse_runs
from mmgr.io import write_json_atomic
from mmgr.report import document
from mmgr.report.claims import SuiteClaim, claim_verdicts
from mmgr.report.lists import record_lists
from mmgr.report.paired import per_user_means, versus
from mmgr.report.records import keep_record
from mmgr.report.runs import METRICS, method_of, summarize_run
from mmgr.report.saliency import record_saliency
from mmgr.rundir import RunDir, git_commit
from mmgr.training.checkpoint import checkpoint_progress
from mmgr.training.monitor import gain

FLAT_SHARE, FLAT_TOLERANCE = 0.2, 0.01
NAME = re.compile(r"[a-z0-9][a-z0-9.+-]{0,63}")


class SuiteRow(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="row name: run folder and table row")
    description: str = Field("", description="one line: what the row is, and its paper")
    recipes: list[str] = Field(description="method recipes merged after the dataset recipe")
    overrides: list[str] = Field(default_factory=list, description="key=value settings after the shared ones")
    seeds: list[int] | None = Field(None, description="this row's seeds (default: the suite's)")


class Suite(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    dataset: str = Field(description="dataset recipe (YAML path)")
    shared: list[str] = Field(default_factory=list, description="key=value settings of every row")
    seeds: list[int] = Field([42], min_length=1)
    baseline: str
    rows: list[SuiteRow] = Field(min_length=1)
    published: dict[str, dict[str, float]] = Field(default_factory=dict, description="row -> metric -> value")
    published_source: str = ""
    claims: list[SuiteClaim] = Field(default_factory=list, description="published claims tested on the rows")

    @model_validator(mode="after")
    def _names(self) -> Suite:
        names = [row.name for row in self.rows]
        bad = [n for n in [self.name, *names] if not NAME.fullmatch(n)]
        if bad:
            raise ValueError(f"name {bad[0]!r}: use lower-case letters, digits, '.', '+', '-' (it names folders)")
        if len(set(names)) != len(names):
            raise ValueError(f"two rows share a name: {sorted(n for n in names if names.count(n) > 1)[0]!r}")
        if self.baseline not in names:
            raise ValueError(f"baseline {self.baseline!r} is not a row ({', '.join(names)})")
        for claim in self.claims:
            unknown = [n for n in (claim.row, claim.versus) if n not in names]
            if unknown:
                raise ValueError(f"claim {claim.claim!r}: {unknown[0]!r} is not a row ({', '.join(names)})")
            if claim.row == claim.versus:
                raise ValueError(f"claim {claim.claim!r}: compares {claim.row!r} with itself")
        return self

    def seeds_of(self, row: SuiteRow) -> list[int]:
        return row.seeds or self.seeds


def load_suite(path: Path) -> Suite:
    """The suite file, validated (errors name the file and the field)."""
    try:
        raw = yaml.safe_load(Path(path).read_text())
        return Suite.model_validate(raw)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the suite file ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'suite'}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"{path}: {problems}") from None


def run_suite(path: Path, out: Path, runs: Path, records: Path, command: str = "", resamples: int = 10_000,
              progress: bool = True, say: Callable[[str], None] = print, overrides: tuple[str, ...] = (),
              finished_only: bool = False, only: tuple[str, ...] = ()) -> dict[str, Any]:
    """Run (or reuse) every row and seed in RUNS, record each in RECORDS, then write OUT/summary.json and the report;
    returns the summary.
    `overrides` (key=value) apply to every row after its own (e.g. training.accelerator=cpu for a smoke test).
    `finished_only`: train nothing; summarize the (row, seed) runs already finished with the suite's settings and
    list the others under `unfinished` (a suite's progress while its long rows still train). `only` (rows, or runs
    named `<row>-s<seed>`): train only these, and treat the others as `finished_only` does (a suite split across
    processes or machines, each training its share, their records merged in RECORDS)."""
    from mmgr.pipeline import finished_record, finished_run, run_recipe

    suite = load_suite(path)
    check_selection(suite, only)
    folders: dict[str, list[Path]] = {}
    seeds: dict[str, list[int]] = {}
    unfinished: list[str] = []
    in_progress: dict[str, dict[str, Any]] = {}        # unfinished run -> its stages' checkpointed progress
    for row, seed in training_order(suite):
        folder, record = runs / f"{row.name}-s{seed}", records / f"{row.name}-s{seed}"
        config = load_config([Path(suite.dataset), *map(Path, row.recipes)],
                             [*suite.shared, *row.overrides, *overrides, f"seed={seed}"])
        train = not finished_only and (not only or bool({row.name, folder.name} & set(only)))
        finished = finished_run(config, folder)
        if not finished and finished_record(config, record):
            say(f"{row.name} seed {seed}: reusing its record {record}")
        elif not train and not finished:
            say(f"{row.name} seed {seed}: not finished, left out")
            unfinished.append(folder.name)
            if stages := checkpointed(folder):
                in_progress[folder.name] = stages
            continue
        else:
            say(f"{row.name} seed {seed}: {folder}")
            if train:
                with RunDir(folder).writing("bench"):
                    run_recipe(config, folder, progress, say)
            record_saliency(folder)
            record_lists(folder)
            keep_record(folder, record)
        folders.setdefault(row.name, []).append(record)
        seeds.setdefault(row.name, []).append(seed)
    folders = {row.name: folders[row.name] for row in suite.rows if row.name in folders}      # the suite's order
    if suite.baseline not in folders:
        raise MmgrError(f"{path}: the baseline row {suite.baseline!r} has no finished run to compare against")
    command = command.replace(f"{Path.cwd()}/", "")                       # results files name no machine paths
    summary = summarize(suite, folders, seeds, resamples, command)
    summary["unfinished"] = unfinished
    summary["in_progress"] = in_progress
    summary["analyses"] = analyse_runs({name: paths[0] for name, paths in folders.items()})
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "summary.json", summary)
    report = document.build([summarize_run(name, paths[0]) for name, paths in folders.items()], suite.baseline, out,
                            resamples, command)
    report.update(convergence=summary["rows"], analyses=summary["analyses"], claims=summary["claims"],
                  unfinished=unfinished, in_progress=in_progress)
    document.write(report, out)
    return summary


def check_selection(suite: Suite, only: tuple[str, ...]) -> None:
    """Every name in `only` is a row of the suite or one of its runs (`<row>-s<seed>`)."""
    known = {row.name for row in suite.rows} | {f"{row.name}-s{seed}" for row, seed in training_order(suite)}
    unknown = [name for name in only if name not in known]
    if unknown:
        raise ConfigError(f"--only {unknown[0]!r}: not a row or run of suite {suite.name!r} (rows: "
                          f"{', '.join(row.name for row in suite.rows)}; runs are named ROW-sSEED)")


def training_order(suite: Suite) -> list[tuple[SuiteRow, int]]:
    """(row, seed) in the order they train: every row's first seed, then every row's second, and so on, so a suite
    stopped part way has every method once before it repeats any."""
    seeds = [(row, suite.seeds_of(row)) for row in suite.rows]
    return [(row, own[rank]) for rank in range(max(len(own) for _, own in seeds)) for row, own in seeds
            if rank < len(own)]


def summarize(suite: Suite, folders: dict[str, list[Path]], seeds: dict[str, list[int]], resamples: int,
              command: str) -> dict[str, Any]:
    """The suite's summary: one entry per row with a run (see the module docstring)."""
    means = {name: per_user_means(paths) for name, paths in folders.items()}
    rows = []
    for row in (r for r in suite.rows if r.name in folders):
        paths = folders[row.name]
        runs = [run_facts(p) for p in paths]
        metrics = np.array([[r["metrics"][m] for m in METRICS] for r in runs])
        rows.append({
            "name": row.name, "description": row.description, "recipe": [*row.recipes, *row.overrides],
            "seeds": seeds[row.name], "method": runs[0]["method"],
            "metrics": dict(zip(METRICS, metrics.mean(axis=0).round(6).tolist(), strict=True)),
            "metrics_sd": dict(zip(METRICS, metrics.std(axis=0, ddof=1 if len(runs) > 1 else 0).round(6).tolist(),
                                   strict=True)),
            "epochs": [r["epochs"] for r in runs], "samples_seen": [r["samples_seen"] for r in runs],
            "train_seconds": [r["train_seconds"] for r in runs], "best_epoch": [r["best_epoch"] for r in runs],
            "validation": [r["validation"] for r in runs], "monitor": runs[0]["monitor"],
            "validation_loss": [r["validation_loss"] for r in runs],
            "converged": all(r["converged"] for r in runs), "late_gain": [r["late_gain"] for r in runs],
            "shared_cores": [r["shared_cores"] for r in runs],
            "vs_baseline": None if row.name == suite.baseline else versus(means[suite.baseline], means[row.name],
                                                                          resamples),
        })
    return {"benchmark": "suite", "method": "+".join(row["name"] for row in rows),
            "metrics": {row["name"]: row["metrics"] for row in rows},      # every results file's keys (DESIGN.md)
            "suite": suite.name, "description": suite.description, "dataset": runs[0]["dataset"]["name"],
            "command": command, "commit": git_commit(), "device": _device(), "baseline": suite.baseline,
            "convergence_rule": {"flat_share": FLAT_SHARE, "relative_tolerance": FLAT_TOLERANCE,
                                 "noise": "one standard error bound sqrt(m (1 - m) / validation users)",
                                 "metric": "each row's training.monitor (ndcg@10, or the validation loss: relative "
                                           "tolerance only)"},
            "published": published_rows(suite, runs[0]["dataset"]["stats"]),
            "rows": rows,
            "claims": claim_verdicts(suite.claims, means, {row["name"]: row["converged"] for row in rows}, resamples)}


def run_facts(path: Path) -> dict[str, Any]:
    """One evaluated run's test metrics, budget and convergence, read from its manifest and results."""
    manifest = RunDir(path).manifest()
    train = manifest["stages"]["train"]
    results = json.loads((path / "results.json").read_text())
    history = train.get("history", [])
    monitor = manifest["config"]["training"].get("monitor", "ndcg@10")
    last = history[-1] if history else {}
    return {"dataset": manifest["dataset"], "method": method_of(manifest["config"], manifest["stages"]),
            "metrics": {m: float(results["test"][m]) for m in METRICS},
            "epochs": train.get("epochs_run"), "best_epoch": train.get("best_epoch"),
            "samples_seen": last.get("samples"), "train_seconds": last.get("train_seconds", train.get("train_seconds")),
            "validation": [[v["step"], round(v["valid_ndcg@10"], 6)] for v in history],
            "validation_loss": [[v["step"], round(v["valid_loss"], 6)] for v in history if "valid_loss" in v],
            "monitor": monitor, "converged": converged(history, train.get("validation_users", 0), monitor),
            "late_gain": late_gain(history, monitor), "shared_cores": shared_cores(history)}


def checkpointed(folder: Path) -> dict[str, Any]:
    """stage -> {epochs, train_seconds, best_epoch} of each stage checkpoint a run not finished yet holds (best_epoch:
    its best validation so far, None for a stage without validation; whether its setup is still the suite's is for
    the run to check when it resumes)."""
    stages = {}
    for checkpoint in sorted(folder.glob("checkpoints/*/last.safetensors")):
        progress = checkpoint_progress(checkpoint)
        if progress is not None:
            seconds = (progress.get("seen") or {}).get("seconds")
            best = progress.get("best_epoch")
            stages[checkpoint.parent.name] = {"epochs": progress.get("epoch"),
                                              "train_seconds": None if seconds is None else round(seconds),
                                              "best_epoch": best if best is not None and best >= 0 else None}
    return stages


def shared_cores(history: list[dict[str, Any]]) -> bool | None:
    """Whether other work ran beside the training: the load average at some validation above the training threads
    + 1 (None: not recorded)."""
    loads = [(v["load_1m"], v["threads"]) for v in history if "load_1m" in v]
    return any(load > threads + 1 for load, threads in loads) if loads else None


def published_rows(suite: Suite, stats: dict[str, Any]) -> dict[str, Any] | None:
    """The suite's published numbers, else the published table whose dataset has exactly these statistics."""
    if suite.published:
        return {"source": suite.published_source, "rows": suite.published}
    match = published.matching(stats)
    return {"source": match.source, "rows": match.rows} if match else None


def split_history(history: list[dict[str, Any]], monitor: str = "ndcg@10") -> tuple[list[float], list[float]]:
    """The monitored validation metric (as a gain: higher is better) before and within the last FLAT_SHARE of the
    steps."""
    cut = history[-1]["step"] * (1 - FLAT_SHARE) if history else 0
    values = [(v["step"], gain(v[f"valid_{monitor}"], monitor)) for v in history]
    return [g for step, g in values if step <= cut], [g for step, g in values if step > cut]


def late_gain(history: list[dict[str, Any]], monitor: str = "ndcg@10") -> float | None:
    """Best monitored validation value of the last FLAT_SHARE of the steps minus the best before, as an improvement
    (a fall of the loss counts positive; None: too few)."""
    before, late = split_history(history, monitor)
    return round(max(late) - max(before), 6) if before and late else None


def converged(history: list[dict[str, Any]], users: int, monitor: str = "ndcg@10") -> bool:
    """Validation flat over the last FLAT_SHARE of the steps, within its noise (see the module docstring)."""
    before, late = split_history(history, monitor)
    if len(before) < 2 or len(late) < 2:
        return False
    best = max(before)
    noise = math.sqrt(best * (1 - best) / users) if users > 0 and monitor == "ndcg@10" else 0.0
    return max(late) - best <= max(FLAT_TOLERANCE * abs(best), noise)


def _device() -> str:
    from mmgr.devices import describe_device

    return describe_device()
