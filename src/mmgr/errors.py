"""Errors that the CLI turns into a clear message and a non-zero exit (never a bare traceback)."""

from __future__ import annotations

from pathlib import Path


class MmgrError(Exception):
    """Base class for every error the user can act on."""


class ConfigError(MmgrError):
    """A recipe or override is invalid (unknown key, wrong type, bad value)."""


class DataError(MmgrError):
    """Input data is malformed; names the file, line and field where known."""

    def __init__(self, message: str, path: Path | str | None = None, line: int | None = None,
                 field: str | None = None):
        self.path, self.line, self.field, self.reason = path, line, field, message
        super().__init__(format_location(path, line, field) + message)


def format_location(path: Path | str | None, line: int | None, field: str | None) -> str:
    """`file:line: field 'x': ` prefix (each part only when known)."""
    where = ""
    if path is not None:
        where = f"{path}:{line}: " if line is not None else f"{path}: "
    if field is not None:
        where += f"field '{field}': "
    return where


def quoted(text: str, limit: int = 80) -> str:
    """`text` quoted for a message, cut to `limit` characters (then marked with ...)."""
    return repr(text[:limit]) + ("..." if len(text) > limit else "")
