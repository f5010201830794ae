"""`mmgr bench --recipes A.yaml B.yaml ... --dataset D --out DIR`: several methods, one protocol, one report."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import typer

from mmgr.cli.common import console
from mmgr.errors import MmgrError


def bench(
    recipes: list[Path] = typer.Option(None, "--recipes", "-r", help="Method recipes to compare: --recipes A.yaml "
                                                                    "B.yaml C.yaml (or --recipes A.yaml -r B.yaml)."),
    dataset: str = typer.Option(None, "--dataset", "-d", help="Dataset recipe: a YAML file or a name in ./configs "
                                                              "(synthetic, ml-100k, beauty, arts, scientific)."),
    suite: Path = typer.Option(None, "--suite", "-s", help="A suite file (configs/suites/arts.yaml): dataset, "
                                                           "rows, seeds, baseline; instead of --recipes/--dataset."),
    runs: Path = typer.Option(None, "--runs", help="--suite: folder of the runs (default runs/suites/NAME); the "
                                                   "summary and report go to --out."),
    records: Path = typer.Option(None, "--records", help="--suite: folder of the run records, each finished run "
                                                         "without its weights (default benchmarks/records/NAME); a "
                                                         "record stands for a run this machine lacks."),
    out: Path = typer.Option(None, "--out", "-o", help="Folder for the runs and the report (default reports/bench; "
                                                       "--suite: benchmarks/results/suite-NAME)."),
    baseline: str = typer.Option(None, help="Recipe name every method is tested against (default: the first)."),
    args: list[str] = typer.Argument(None, metavar="[RECIPE.yaml]... [KEY=VALUE]...",
                                     help="More recipes after --recipes, then config overrides for every recipe, "
                                          "e.g. training.max_steps=500."),
    resamples: int = typer.Option(10_000, min=100, help="Bootstrap resamples of the paired tests."),
    progress: bool = typer.Option(True, help="Show progress bars."),
    finished_only: bool = typer.Option(False, "--finished-only", help="--suite: train nothing; summarize the runs "
                                                                      "already finished with the suite's settings "
                                                                      "and list the others as unfinished."),
    only: list[str] = typer.Option(None, "--only", help="--suite: train only this row, or run ROW-sSEED "
                                                        "(repeatable); the others are reused when finished or "
                                                        "recorded, else left out."),
) -> None:
    """Train (or reuse) and evaluate each recipe on one dataset with one seed, then write a report: Markdown and a
    self-contained HTML page with the metric table (95% intervals, paired tests against the baseline), published
    numbers where the data matches, training curves, tokenizer diagnostics and the runs' analyses."""
    from mmgr.report.bench import bench as run_bench
    from mmgr.report.bench import summary_lines

    command = "mmgr " + shlex.join(sys.argv[1:])
    more, overrides = split_arguments(args or [])
    if suite is not None:
        if more:
            raise MmgrError("--suite takes its rows from the suite file; give no recipes beside it")
        bench_suite(suite, out, runs, records, command, resamples, progress, overrides, finished_only,
                    tuple(only or ()))
        return
    if finished_only or only:
        raise MmgrError(f"{'--finished-only' if finished_only else '--only'} selects a suite's runs: give --suite "
                        "FILE")
    if not recipes or not dataset:
        raise MmgrError("give --suite FILE, or --recipes and --dataset")
    out = out or Path("reports/bench")
    paths = run_bench([*recipes, *more], dataset, out, baseline, overrides, resamples, progress,
                      command=command,
                      say=lambda text: console.print(text, highlight=False))
    for line in summary_lines(paths["json"]):
        console.print(line, highlight=False)
    console.print(f"[green]wrote[/green] {paths['html']} and {paths['markdown']}")


def bench_suite(path: Path, out: Path | None, runs: Path | None, records: Path | None, command: str, resamples: int,
                progress: bool, overrides: tuple[str, ...], finished_only: bool, only: tuple[str, ...]) -> None:
    from mmgr.report.suite import load_suite, run_suite

    name = load_suite(path).name
    out = out or Path("benchmarks/results") / f"suite-{name}"
    summary = run_suite(path, out, runs or Path("runs/suites") / name, records or Path("benchmarks/records") / name,
                        command, resamples, progress,
                        say=lambda text: console.print(text, highlight=False), overrides=overrides,
                        finished_only=finished_only, only=only)
    for row in summary["rows"]:
        m = row["metrics"]
        console.print(f"{row['name']:<22} NDCG@10 {m['ndcg@10']:.4f}  HR@10 {m['hr@10']:.4f}  epochs "
                      f"{row['epochs']}  converged {'yes' if row['converged'] else 'NO'}", highlight=False)
    if summary["unfinished"]:
        console.print(f"not finished, left out: {', '.join(summary['unfinished'])}", highlight=False)
    console.print(f"[green]wrote[/green] {out / 'summary.json'} and {out / 'report.html'}")


def split_arguments(args: list[str]) -> tuple[list[Path], tuple[str, ...]]:
    """(recipes, overrides) of the positional arguments: YAML files first, then key=value settings."""
    recipes = [Path(a) for a in args if a.endswith((".yaml", ".yml"))]
    overrides = tuple(a for a in args if "=" in a and not a.endswith((".yaml", ".yml")))
    stray = [a for a in args if Path(a) not in recipes and a not in overrides]
    if stray:
        raise MmgrError(f"{stray[0]!r} is neither a recipe (.yaml) nor a key=value override")
    return recipes, overrides
