"""Reading source files strictly: UTF-8 (a leading BOM is dropped), CRLF or LF line ends, JSON without duplicate
keys or NaN, CSV with every quote closed. Every failure is a `DataError` naming the file and line."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mmgr.errors import DataError

BOM = "\ufeff"


def read_text(path: Path) -> str:
    """The whole file as text; invalid UTF-8 is an error naming the line and column of the first bad byte."""
    data = _read_bytes(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise DataError(f"not UTF-8 text (byte 0x{data[exc.start]:02x} at column {column})", path, line) from None
    return text.removeprefix(BOM)


def iter_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, text without its line end) for every line, decoded strictly one line at a time."""
    try:
        with open(path, "rb") as fh:
            for line_no, raw in enumerate(fh, start=1):
                yield line_no, decode_line(raw, path, line_no)
    except OSError as exc:
        raise DataError(f"cannot read ({exc.__class__.__name__}: {exc})", path) from None


def decode_line(raw: bytes, path: Path, line_no: int) -> str:
    """One line's bytes as text (BOM dropped on line 1, `\\r\\n` / `\\n` removed)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})", path,
                        line_no) from None
    if line_no == 1:
        text = text.removeprefix(BOM)
    return text.removesuffix("\n").removesuffix("\r")


def check_no_nul(text: str, path: Path, line_no: int) -> None:
    """NUL characters are never part of an id or a value in these formats: refuse them by location."""
    if "\x00" in text:
        raise DataError(f"NUL byte at column {text.index(chr(0)) + 1}", path, line_no)


def load_json(path: Path) -> Any:
    """Parse a JSON file; duplicate object keys, NaN/Infinity and invalid UTF-8 are errors naming the line."""
    text = read_text(path)
    try:
        return json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise DataError(f"not valid JSON: {exc.msg} (column {exc.colno})", path, exc.lineno) from None
    except _DuplicateKey as exc:
        raise DataError(f"duplicate key {exc.key!r} in a JSON object", path, _second_line(text, exc.key),
                        field=exc.key) from None
    except _BadConstant as exc:
        raise DataError(f"{exc.name} is not a JSON value", path, _line_of(text, exc.name)) from None
    except RecursionError:
        raise DataError("JSON nested too deeply", path) from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise DataError(f"unreadable JSON value ({exc})", path) from None


def parse_json_line(text: str, path: Path, line_no: int) -> Any:
    """One JSON-lines record, with the same checks as `load_json`."""
    try:
        return json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise DataError(f"not valid JSON ({exc.msg} at column {exc.colno})", path, line_no) from None
    except _DuplicateKey as exc:
        raise DataError(f"duplicate key {exc.key!r} in a JSON object", path, line_no, exc.key) from None
    except _BadConstant as exc:
        raise DataError(f"{exc.name} is not a JSON value", path, line_no) from None
    except RecursionError:
        raise DataError("JSON nested too deeply", path, line_no) from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise DataError(f"unreadable JSON value ({exc})", path, line_no) from None


def csv_records(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(physical line where the record starts, fields) of a CSV file, streamed; the header is the first record.

    Strict: an unclosed quote or a character after a closing quote is an error naming the line; blank lines are
    skipped; NUL bytes and invalid UTF-8 are refused by line."""
    start = 1
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh, strict=True)
            for fields in reader:
                line, start = start, reader.line_num + 1
                if not fields:
                    continue
                if any("\x00" in value for value in fields):
                    raise DataError("NUL byte in a field", path, line)
                yield line, fields
    except csv.Error as exc:
        hint = "a quote opened on this line is never closed" if "end of data" in str(exc) else str(exc)
        raise DataError(f"malformed CSV ({hint})", path, start) from None
    except UnicodeDecodeError:
        raise first_decode_error(path) from None
    except FileNotFoundError:
        raise DataError("not found", path) from None


def first_decode_error(path: Path) -> DataError:
    """The located error for the first line of `path` that is not UTF-8 (found by re-reading it line by line)."""
    with open(path, "rb") as fh:
        for line_no, raw in enumerate(fh, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                return DataError(f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})", path,
                                 line_no)
    return DataError("not UTF-8 text", path)


def check_int64(value: int, path: Path, line: int | None, field: str) -> int:
    """`value` if it fits a signed 64-bit integer (what the tables store), else a located error."""
    if not -(2**63) <= value < 2**63:
        raise DataError(f"{value} is out of range for a 64-bit integer", path, line, field)
    return value


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


class _BadConstant(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise _BadConstant(name)


def _second_line(text: str, key: str) -> int | None:
    """Line of the second `"key":` in `text` (where the duplicate is), when it can be found."""
    hits = [m.start() for m in re.finditer(re.escape(json.dumps(key)) + r"\s*:", text)]
    return text.count("\n", 0, hits[1]) + 1 if len(hits) > 1 else None


def _line_of(text: str, token: str) -> int | None:
    at = text.find(token)
    return text.count("\n", 0, at) + 1 if at >= 0 else None


def _read_bytes(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise DataError("not found", path) from None
    except OSError as exc:
        raise DataError(f"cannot read ({exc.__class__.__name__}: {exc})", path) from None
