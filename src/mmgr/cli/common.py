"""Shared CLI pieces: the console, config assembly from recipe + overrides, summaries as tables."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from rich.console import Console
from rich.table import Table

from mmgr.config import Config, load_config
from mmgr.rundir import RunDir

Command = TypeVar("Command", bound=Callable[..., Any])

console = Console()
err_console = Console(stderr=True, soft_wrap=True)


def build_config(recipe: list[Path] | None, overrides: list[str] | None, **options: Any) -> Config:
    """Recipe, then command-line options given explicitly (as dotted keys), then key=value overrides."""
    explicit = [f"{key}={value}" for key, value in options.items() if value is not None]
    return load_config(recipe or None, [*explicit, *(overrides or [])])


def require_run(path: Path) -> RunDir:
    """The run directory at `path`, checked before any heavy import (torch, transformers) so that a wrong path is
    reported at once."""
    run = RunDir(path)
    run.manifest()   # raises "PATH is not a run directory (no manifest.json) ..." or names a damaged manifest
    return run


def writes_run(stage: str, param: str = "run", creates: bool = False) -> Callable[[Command], Command]:
    """Wrap a CLI command that writes the run directory given by its `param` argument: it runs holding the run's
    write lock (`RunDir.writing`), so a second process writing the same run is refused with the first one's pid.
    Unless the command `creates` the run, the directory must already be a run (checked first, before the command
    imports anything heavy)."""
    def wrap(command: Command) -> Command:
        @functools.wraps(command)   # typer reads the wrapped signature and type hints
        def locked(**params: Any) -> Any:
            run = RunDir(params[param]) if creates else require_run(params[param])
            with run.writing(stage):
                return command(**params)
        return locked  # type: ignore[return-value]
    return wrap


def stats_table(title: str, stats: dict[str, Any]) -> Table:
    table = Table(title=title, show_header=False)
    table.add_column("statistic", style="bold")
    table.add_column("value", justify="right")
    for key, value in stats.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k} {_fmt(v)}" for k, v in value.items())
        table.add_row(key.replace("_", " "), _fmt(value))
    return table


def problems_table(problems: dict[str, dict[str, Any]]) -> Table | None:
    if not problems:
        return None
    table = Table(title="Dropped or masked during import")
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_column("first examples", overflow="fold")
    for category, info in problems.items():
        table.add_row(category, f"{info['count']:,}", "\n".join(info.get("examples", [])[:2]))
    return table


def _fmt(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
