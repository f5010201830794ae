"""`mmgr train RUN [--recipe R] [KEY=VALUE...]`, `mmgr evaluate RUN`, `mmgr recommend RUN --user U`."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from mmgr.cli.common import console, stats_table
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
    from mmgr.training.stage import train_run

    run_dir = RunDir(run)
    summary = train_run(run_dir, run_config(run_dir, recipe, overrides), progress)
    console.print(stats_table("train", {k: v for k, v in summary.items() if k != "history"}))


def evaluate(
    run: Path = typer.Argument(..., help="Run directory with a trained model."),
    overrides: list[str] = typer.Argument(None, help="Config overrides, e.g. decoding.beam_size=50."),
    progress: bool = typer.Option(True, help="Show progress bars."),
) -> None:
    """Full-ranking HR/NDCG/MRR@{1,5,10,20} on validation and test; writes results.json and per-user Parquet."""
    from mmgr.training.stage import evaluate_run

    run_dir = RunDir(run)
    results = evaluate_run(run_dir, run_dir.config(overrides or []), progress)
    for split in ("valid", "test"):
        console.print(stats_table(split, results[split]))


def recommend(
    run: Path = typer.Argument(..., help="Run directory with a trained model."),
    user: str = typer.Option(..., "--user", "-u", help="User id as in the data."),
    k: int = typer.Option(10, "--k", help="How many items."),
) -> None:
    """Top-K items for a user, with titles."""
    from mmgr.training.stage import recommend as recommend_items

    run_dir = RunDir(run)
    table = Table(title=f"top {k} for user {user}")
    for column in ("rank", "item_id", "title", "score"):
        table.add_column(column)
    for row in recommend_items(run_dir, run_dir.config(), user, k):
        table.add_row(str(row["rank"]), row["item_id"], row["title"], f"{row['score']:.3f}")
    console.print(table)
