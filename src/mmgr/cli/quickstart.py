"""`mmgr quickstart`: every stage built so far, on the built-in synthetic world (recipe: mmgr/recipes/quickstart.yaml,
shipped inside the package)."""

from __future__ import annotations

import shutil
from pathlib import Path

import typer

from mmgr.cli.common import console, stats_table
from mmgr.config import load_config
from mmgr.errors import MmgrError
from mmgr.rundir import LOCK, RunDir

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "quickstart.yaml"


def quickstart(
    out: Path = typer.Option(Path("runs/quickstart"), "--out", "-o", help="Run directory (replaced)."),
    overrides: list[str] = typer.Argument(None, help="Config overrides, e.g. data.synthetic.n_users=200."),
    progress: bool = typer.Option(True, help="Show progress bars."),
) -> None:
    """Generate the synthetic multimodal world, then import, encode, tokenize, train and evaluate it with the
    quickstart recipe (the runner of `mmgr run`)."""
    from mmgr.pipeline import run_recipe

    config = load_config(RECIPE, overrides or [])
    if out.exists() and not RunDir(out).exists() and any(p.name != LOCK for p in out.iterdir()):
        raise MmgrError(f"{out} exists and is not a run directory; choose another --out")
    with RunDir(out).writing("quickstart"):
        _clear(out)
        done = run_recipe(config, out, progress, say=lambda text: console.print(text, highlight=False))
    shown = {k: v for k, v in done["train"].items() if k not in ("history", "stages")}
    console.print(stats_table("training", shown))
    console.print(stats_table("test", done["results"]["test"]))
    console.print(f"[green]done[/green]: {out} (results.json, per_user_test.parquet, manifest.json)")


def _clear(out: Path) -> None:
    """Empty a previous run directory (only ever one: it has a manifest), keeping the lock this process holds."""
    if not RunDir(out).exists():
        return
    for path in out.iterdir():
        if path.name == LOCK:
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
