"""`mmgr encode RUN --modality text|image|fused|caption|interests [KEY=VALUE...]`."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from mmgr.cli.common import console, require_run, stats_table


def encode(
    run: Path = typer.Argument(..., help="Run directory (from `mmgr data import`)."),
    modality: str = typer.Option(..., "--modality", "-m", help="text, image, fused, caption or interests."),
    overrides: list[str] = typer.Argument(None, help=escape("Config overrides, e.g. encoders.text.fields=[title].")),
    progress: bool = typer.Option(True, help="Show progress bars."),
) -> None:
    """Compute item features (or captions / interest tags) into RUN/features/."""
    run_dir = require_run(run)
    from mmgr.encoders.stage import encode_run

    config = run_dir.config(overrides or [])
    info = encode_run(run_dir, modality, config, progress=progress)
    console.print(stats_table(f"encode {modality}", info))
