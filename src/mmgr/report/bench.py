"""`mmgr bench`: several recipes on one dataset under one protocol and seed, then one report.

Each recipe runs (`mmgr run`: import, encode, tokenize, train, evaluate) in OUT/runs/<recipe name>; a run that
finished with the same merged config is reused. The report (OUT/report.{md,html,json}, OUT/figures/) compares them
against a baseline (default: the first recipe).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mmgr.config import Config, load_config, validate_config
from mmgr.errors import MmgrError
from mmgr.report import document
from mmgr.report.runs import summarize_run
from mmgr.rundir import RunDir

BENCH_STAGE = "bench"


def dataset_recipe(dataset: str, search: Path = Path("configs")) -> Path:
    """A dataset recipe: a YAML path, or a name with a recipe in ./configs (e.g. `ml-100k`)."""
    path = Path(dataset)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise MmgrError(f"--dataset {dataset}: no such recipe file")
        return path
    named = search / f"{dataset}.yaml"
    if named.is_file():
        return named
    known = ", ".join(sorted(p.stem for p in search.glob("*.yaml"))) or f"none in {search}"
    raise MmgrError(f"--dataset {dataset}: not a recipe file and no {named} (known: {known})")


def recipe_name(recipe: Path, taken: set[str]) -> str:
    name = recipe.stem
    if name in taken:
        raise MmgrError(f"two recipes are named {name!r}; rename one (the name is the run folder and table row)")
    return name


def config_digest(config: Config) -> str:
    return hashlib.sha256(json.dumps(config.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()


def finished(run: RunDir, config: Config) -> bool:
    """The run holds results of exactly this config. The recorded config is validated again, so settings added to
    mmgr since the run (at their defaults) do not make it stale; runs recorded before the config itself was kept
    compare the run's manifest config."""
    if not ((run.path / "results.json").is_file() and run.exists()):
        return False
    manifest = run.manifest()
    stage = manifest["stages"].get(BENCH_STAGE)
    if stage is None:
        return False
    recorded = stage.get("config", manifest["config"])
    try:
        return validate_config(recorded) == config
    except MmgrError:                               # recorded by a version whose settings no longer validate
        return False


def bench(recipes: list[Path], dataset: str, out: Path, baseline: str | None = None, overrides: tuple[str, ...] = (),
          resamples: int = 10_000, progress: bool = True, command: str = "",
          say: Callable[[str], None] = print) -> dict[str, Path]:
    """Run (or reuse) every recipe on `dataset` and write the report; returns the report files."""
    from mmgr.pipeline import run_recipe

    data = dataset_recipe(dataset)
    names: list[str] = []
    for recipe in recipes:
        names.append(recipe_name(recipe, set(names)))
    runs = []
    for name, recipe in zip(names, recipes, strict=True):
        config = load_config([data, recipe], list(overrides))
        run = RunDir(out / "runs" / name)
        if finished(run, config):
            say(f"{name}: reusing {run.path}")
        else:
            say(f"{name}: running {recipe} on {data}")
            with run.writing("bench"):
                run_recipe(config, run.path, progress, say)
                run.record(BENCH_STAGE, {"config_sha256": config_digest(config), "recipe": str(recipe),
                                         "dataset": str(data), "config": config.model_dump(mode="json")})
        runs.append(summarize_run(name, run.path))
    report = document.build(runs, baseline or names[0], out, resamples, command)
    return document.write(report, out)


def summary_lines(report_json: Path) -> list[str]:
    """One line per method for the terminal: test NDCG@10 and HR@10."""
    report: dict[str, Any] = json.loads(report_json.read_text())
    return [f"{r['name']:<24} NDCG@10 {r['test']['ndcg@10']:.4f}  HR@10 {r['test']['hr@10']:.4f}"
            for r in report["rows"]]
