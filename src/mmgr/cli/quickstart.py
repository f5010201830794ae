"""`mmgr quickstart`: every stage built so far, on the built-in synthetic world."""

from __future__ import annotations

import shutil
from pathlib import Path

import typer

from mmgr.cli.common import build_config, console, problems_table, stats_table
from mmgr.errors import MmgrError
from mmgr.rundir import RunDir


def quickstart(
    out: Path = typer.Option(Path("runs/quickstart"), "--out", "-o", help="Run directory (replaced)."),
    overrides: list[str] = typer.Argument(None, help="Config overrides, e.g. data.synthetic.n_users=200."),
) -> None:
    """Generate the synthetic multimodal world and run the pipeline on it."""
    from mmgr.data.importer import import_into_run

    config = build_config(None, overrides)
    if RunDir(out).exists():
        shutil.rmtree(out)  # only ever a previous run directory (it has a manifest)
    elif out.exists() and any(out.iterdir()):
        raise MmgrError(f"{out} exists and is not a run directory; choose another --out")
    with console.status("generating the synthetic world and importing it"):
        run, _, summary = import_into_run(config, out)
    console.print(stats_table("synthetic world", summary["stats"]))
    console.print(stats_table("split", {k: v for k, v in run.manifest()["split"].items() if k != "targets"}))
    table = problems_table(summary["problems"])
    if table is not None:
        console.print(table)
    console.print(f"[green]data stage done[/green]: {run.path}. Next stages (encode, tokenize, train, evaluate) "
                  "are not built yet.")
