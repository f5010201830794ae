"""Shared CLI pieces: the console, config assembly from recipe + overrides, summaries as tables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from mmgr.config import Config, load_config

console = Console()
err_console = Console(stderr=True, soft_wrap=True)


def build_config(recipe: list[Path] | None, overrides: list[str] | None, **options: Any) -> Config:
    """Recipe, then command-line options given explicitly (as dotted keys), then key=value overrides."""
    explicit = [f"{key}={value}" for key, value in options.items() if value is not None]
    return load_config(recipe or None, [*explicit, *(overrides or [])])


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
