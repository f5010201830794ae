"""Readers, one module per input format. Each turns source files into a `DatasetBuilder`.

A reader is `read(path: Path, items: Path | None, images: Path | None) -> DatasetBuilder`; it raises
`DataError` (file, line, field) on malformed input and records anything it skips in `builder.problems`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from mmgr.data.builder import DatasetBuilder
from mmgr.registry import Registry

Reader = Callable[[Path, Path | None, Path | None], DatasetBuilder]
READERS: Registry[Reader] = Registry("data format")   # each format module registers its reader(s)
