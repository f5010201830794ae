"""Published id maps: the real ids (ASINs, reviewer ids) behind a file's internal indices.

- `X.item2id` / `X.user2id` (LC-Rec, MQL4GRec) and `X.item2index` / `X.user2index` (UniSRec): one `RAW<TAB>INDEX`
  line per entity.
- P5 `datamaps.json`: `id2item` / `id2user` (or their inverses `item2id` / `user2id`).

A map is `{internal index (str): real id}`; both sides must be unique, so the map can be read both ways.
"""

from __future__ import annotations

from pathlib import Path

from mmgr.data.formats.textio import check_no_nul, iter_lines
from mmgr.errors import DataError

IdMap = dict[str, str]


def read_tab_map(path: Path) -> IdMap:
    """`RAW<TAB>INDEX` lines -> {index: raw}; blank lines are skipped, anything else malformed is an error."""
    out: IdMap = {}
    raws: dict[str, int] = {}
    for line_no, text in iter_lines(path):
        if not text.strip():
            continue
        check_no_nul(text, path, line_no)
        fields = text.strip().split("\t")
        if len(fields) != 2:
            raise DataError(f"expected 'RAW_ID<TAB>INDEX', found {len(fields)} tab-separated fields", path, line_no)
        raw, index = (f.strip() for f in fields)
        if not raw:
            raise DataError("empty raw id", path, line_no, "raw id")
        if not _is_index(index):
            raise DataError(f"index {index!r} is not a non-negative integer", path, line_no, "index")
        index = str(int(index))
        if index in out:
            raise DataError(f"index {index} is given twice (also to {out[index]!r})", path, line_no, "index")
        if raw in raws:
            raise DataError(f"raw id {raw!r} is given twice (first at line {raws[raw]})", path, line_no, "raw id")
        out[index], raws[raw] = raw, line_no
    if not out:
        raise DataError("empty id map", path)
    return out


def from_mapping(mapping: object, path: Path, name: str, inverse: bool) -> IdMap:
    """A JSON object as {index: raw}; `inverse`: the object is {raw: index} (P5 `item2id`)."""
    if not isinstance(mapping, dict):
        raise DataError(f"expected an object, got {type(mapping).__name__}", path, field=name)
    out: IdMap = {}
    for key, value in mapping.items():
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise DataError(f"entry {key!r}: expected a string or integer, got {type(value).__name__}", path,
                            field=f"{name}.{key}")
        index, raw = (str(value), key) if inverse else (key, str(value))
        if not _is_index(index):
            raise DataError(f"id {index!r} is not a non-negative integer", path, field=f"{name}.{key}")
        if not raw.strip() or "\x00" in raw:
            raise DataError(f"empty or invalid raw id {raw!r}", path, field=f"{name}.{key}")
        index = str(int(index))
        if index in out:
            raise DataError(f"id {index} is given twice", path, field=f"{name}.{key}")
        out[index] = raw.strip()
    if len(set(out.values())) != len(out):
        raise DataError("two ids map to the same raw id", path, field=name)
    return out


def companion(folder: Path, stem: str, kind: str) -> Path | None:
    """`<stem>.<kind>2id` or `<stem>.<kind>2index` beside the data, if present (kind: item or user)."""
    for suffix in (f".{kind}2id", f".{kind}2index"):
        candidate = folder / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def _is_index(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) <= 18
