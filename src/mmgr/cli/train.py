"""`mmgr train RUN [--recipe R] [KEY=VALUE...]`, `mmgr evaluate RUN`, `mmgr recommend RUN --user U`,
`mmgr compare RUN_A RUN_B`."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from mmgr.cli.common import console, require_run, stats_table
from mmgr.config import load_config
from mmgr.rundir import RunDir


def run_config(run: RunDir, recipes: list[Path] | None, overrides: list[str] | None):
    """The run's config, then the recipes' keys, then key=value overrides."""
    return load_config(recipes or None, overrides or [], base=run.manifest()["config"])


def train(
    run: Path = typer.Argument(..., help="Run directory with codes (from `mmgr tokenize`)."),
    recipe: list[Path] = typer.Option(None, "--recipe", "-r", help="Recipe(s) merged into the run's config, e.g. "
                                                                   "configs/tiger.yaml."),
    overrides: list[str] = typer.Argument(None, help="Config overrides, e.g. training.epochs=5."),
    progress: bool = typer.Option(True, help="Show progress bars."),
) -> None:
    """Train the recommender; a killed run resumes from its last checkpoint when started again."""
    run_dir = require_run(run)
    from mmgr.engines.base import train_run

    summary = train_run(run_dir, run_config(run_dir, recipe, overrides), progress)
    console.print(stats_table("train", {k: v for k, v in summary.items() if k not in ("history", "stages")}))


def evaluate(
    run: Path = typer.Argument(..., help="Run directory with a trained model."),
    overrides: list[str] = typer.Argument(None, help="Config overrides, e.g. decoding.beam_size=50."),
    progress: bool = typer.Option(True, help="Show progress bars."),
) -> None:
    """Full-ranking HR/NDCG/MRR@{1,5,10,20} on validation and test; writes results.json and per-user Parquet."""
    run_dir = require_run(run)
    from mmgr.engines.base import evaluate_run

    results = evaluate_run(run_dir, run_dir.config(overrides or []), progress)
    for split in ("valid", "test"):
        console.print(stats_table(split, results[split]))


def recommend(
    run: Path = typer.Argument(..., help="Run directory with a trained model."),
    user: str = typer.Option(None, "--user", "-u", help="User id as in the data."),
    k: int = typer.Option(10, "--k", help="How many items."),
    input_file: Path = typer.Option(None, "--input", help=escape("JSONL of requests ({\"user_id\": ...} or "
                                                                  "{\"history\": [item ids]}) for batch scoring.")),
    output: Path = typer.Option(None, "--output", help="JSONL written with each request's items (with --input)."),
    explain: bool = typer.Option(False, "--explain", help="Add what the model writes about each recommended SID "
                                                          "(title, interests, visual description: TriAlignGR runs)."),
    progress: bool = typer.Option(True, help="Show progress bars."),
) -> None:
    """Top-K items for a user, with titles; or batch scoring of a JSONL file (--input ... --output ...)."""
    from mmgr.errors import MmgrError

    run_dir = require_run(run)
    if (user is None) == (input_file is None) or (input_file is None) != (output is None):
        raise MmgrError("give --user USER, or --input REQUESTS.jsonl --output RECS.jsonl")
    from mmgr.inference.ranker import recommend as recommend_items
    if input_file is not None:
        from mmgr.inference.ranker import load_ranker
        from mmgr.serving.batch import score_file
        from mmgr.serving.service import Recommender

        recommender = Recommender(load_ranker(run_dir, run_dir.config()), explain=explain)
        console.print(stats_table("recommend", score_file(recommender, input_file, output, k, progress=progress)))
        return
    rows = recommend_items(run_dir, run_dir.config(), user, k, explain)
    fields = list(rows[0].get("explanation", {})) if rows else []
    table = Table(title=f"top {k} for user {user}")
    for column in ("rank", "item_id", "title", "score", *(f"model's {f}" for f in fields)):
        table.add_column(column)
    for row in rows:
        table.add_row(str(row["rank"]), row["item_id"], row["title"], f"{row['score']:.3f}",
                      *(row["explanation"][f] for f in fields))
    console.print(table)


def compare(
    run_a: Path = typer.Argument(..., help="Baseline run directory (evaluated)."),
    run_b: Path = typer.Argument(..., help="Run compared against it (evaluated on the same data)."),
    split: str = typer.Option("test", help="valid or test."),
    metric: list[str] = typer.Option(["ndcg@10", "hr@10"], "--metric", "-m", help="Per-user metric(s)."),
    resamples: int = typer.Option(10_000, help="Bootstrap resamples."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Paired bootstrap over users: B - A per metric with a 95% confidence interval and p-value."""
    from mmgr.evaluation.significance import compare_runs

    result = compare_runs(run_a, run_b, split, tuple(metric), resamples)
    if as_json:
        print(json.dumps(result, indent=2))
        return
    table = Table(title=f"{run_b.name} vs {run_a.name}, {split}, {result['users']} paired users")
    for column in ("metric", "A", "B", "B - A", "95% CI", "p"):
        table.add_column(column, justify="right")
    for name, m in result["metrics"].items():
        table.add_row(name, f"{m['a']:.4f}", f"{m['b']:.4f}", f"{m['mean_difference']:+.4f}",
                      f"[{m['low']:+.4f}, {m['high']:+.4f}]", f"{m['p_value']:.4f}")
    console.print(table)
