"""Entry point: `mmgr <stage> ...`. Errors the user can act on become a message and exit code 1."""

from __future__ import annotations

import os
import sys

# With few cores, spinning OpenMP workers starve everything between kernels (JPEG decoding, Python): a measured
# 4x slowdown of image encoding on 2 cores. Sleep instead; set OMP_WAIT_POLICY yourself to override.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import typer

from mmgr.cli import analyze, bench, data, encode, quickstart, run, serve, tokenize, train
from mmgr.cli.common import err_console, writes_run
from mmgr.errors import MmgrError
from mmgr.version import __version__

app = typer.Typer(name="mmgr", help="Multimodal generative recommendation, from raw files to served "
                                    "recommendations.", no_args_is_help=True, pretty_exceptions_enable=False)

# Commands that write a run directory hold its lock (one writer at a time; `data import` takes it in cli/data.py);
# recommend, compare, data stats and analyze's input runs are only read. (quickstart locks its --out itself: it
# clears a previous run first; bench locks each run it writes.)
app.add_typer(data.app, name="data")
app.command("encode")(writes_run("encode")(encode.encode))
app.command("tokenize")(writes_run("tokenize")(tokenize.tokenize))
app.command("train")(writes_run("train")(train.train))
app.command("evaluate")(writes_run("evaluate")(train.evaluate))
app.command("recommend")(train.recommend)
app.command("compare")(train.compare)
app.command("quickstart")(quickstart.quickstart)
app.command("run")(writes_run("run", "out", creates=True)(run.run))
app.command("analyze")(writes_run("analyze", "out")(analyze.analyze))
app.command("serve")(serve.serve)
app.command("export")(serve.export)
app.command("bench")(bench.bench)


def show_progress_lines() -> None:
    """The `mmgr` logger's INFO lines (progress where stderr is no terminal, validations, stage summaries) on
    stderr, plainly."""
    import logging

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    logger = logging.getLogger("mmgr")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


@app.callback(invoke_without_command=True)
def _version(version: bool = typer.Option(False, "--version", help="Print the version and exit.")) -> None:
    if version:
        print(f"mmgr {__version__}")
        raise typer.Exit()


def main() -> None:
    show_progress_lines()
    try:
        app()
    except MmgrError as exc:
        err_console.print(f"[red]error:[/red] {exc}", highlight=False)
        sys.exit(1)
    except KeyboardInterrupt:
        err_console.print("[red]interrupted[/red]; artifacts are written atomically, re-run to continue")
        sys.exit(130)
