"""Collects what a reader skipped or repaired, so nothing is dropped silently."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from mmgr.errors import format_location


@dataclass
class Problems:
    """Counts per category plus the first few located examples of each."""

    max_examples: int = 5
    counts: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, category: str, message: str = "", path: Path | str | None = None, line: int | None = None,
            field: str | None = None, count: int = 1) -> None:
        self.counts[category] += count
        shown = self.examples.setdefault(category, [])
        if message and len(shown) < self.max_examples:
            shown.append(format_location(path, line, field) + message)

    def as_dict(self) -> dict[str, dict[str, object]]:
        return {cat: {"count": n, "examples": self.examples.get(cat, [])} for cat, n in sorted(self.counts.items())}
