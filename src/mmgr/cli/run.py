"""`mmgr run --recipe DATA.yaml --recipe METHOD.yaml --out RUN [KEY=VALUE...]`: one recipe, data to results."""

from __future__ import annotations

from pathlib import Path

import typer

from mmgr.cli.common import console, stats_table
from mmgr.config import load_config


def run(
    recipe: list[Path] = typer.Option(..., "--recipe", "-r", help="Recipes merged in order: a dataset recipe, then "
                                                                  "a method recipe (configs/ml-100k.yaml "
                                                                  "configs/mgr-lfpp.yaml)."),
    out: Path = typer.Option(..., "--out", "-o", help="Run directory (created, or reused when it holds this data)."),
    overrides: list[str] = typer.Argument(None, help="Config overrides, e.g. training.max_steps=500."),
    progress: bool = typer.Option(True, help="Show progress bars."),
) -> None:
    """Import, encode, tokenize (or import SID tables), train and evaluate one method; reuses finished stages."""
    from mmgr.pipeline import run_recipe

    config = load_config(recipe, overrides or [])
    done = run_recipe(config, out, progress, say=lambda text: console.print(text, highlight=False))
    for split in ("valid", "test"):
        console.print(stats_table(split, done["results"][split]))
    console.print(f"[green]done[/green]: {out} (results.json, per_user_test.parquet, manifest.json)")
