"""Import published semantic-ID tables (LC-Rec / LETTER / MQL4GRec `index.json`):
`{"<item>": ["<a_183>", "<b_70>", "<c_232>", "<d_6>"], ...}` -> codes int64[N, L] aligned with the catalog.

Accepted spellings of one code: `<a_12>` (LC-Rec, LETTER), `<A_12>` (MQL4GRec's image tables; the letter names the
level, a, b, c, ... in order), or a plain integer (`12` or `"12"`). One table uses one spelling per level position.

The table must cover exactly the run's catalog: a table with items the run lacks, or lacking items the run has, is
refused with both counts and the first missing and extra keys (a table for another catalog is never half-used).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import numpy as np

from mmgr.data.formats.textio import load_json
from mmgr.errors import DataError

TOKEN = re.compile(r"<([a-zA-Z])_(\d{1,12})>")
PLAIN = re.compile(r"\d{1,12}")
MAX_CODE = 1 << 20  # codes index a vocabulary: a larger one is a damaged table, not a codebook


def read_index(path: Path, item_ids: list[str], align: Literal["item_id", "row"] = "item_id",
               source_ids: list[str] | None = None) -> np.ndarray:
    """Codes for every catalog item, in catalog order.

    `align="row"`: the table's keys are 0-based catalog rows (LC-Rec files made from a P5 split number items
    P5 id - 1). `item_id`: keys are the catalog's item ids, or, for a catalog whose ids came from a published id map
    (`source_ids`, the source file's own indices), those indices (MQL4GRec keys its tables by the index)."""
    table = _load(path)
    keys = _keys(table, item_ids, align, source_ids, path)
    rows = [_parse(table[k], path, k) for k in keys]
    depth = {len(r) for r in rows}
    if len(depth) != 1:
        raise DataError(f"items have different numbers of codes: {sorted(depth)}", path)
    return np.array(rows, dtype=np.int64)


def _load(path: Path) -> dict[str, object]:
    table = load_json(Path(path))
    if not isinstance(table, dict) or not table:
        raise DataError("expected a non-empty object {item: [code tokens]}", path)
    return table


def _keys(table: dict[str, object], item_ids: list[str], align: str, source_ids: list[str] | None,
          path: Path) -> list[str]:
    """The table key of each catalog row; refuses a table whose keys are not exactly the catalog's."""
    if align == "row":
        candidates = {"0-based rows": [str(i) for i in range(len(item_ids))]}
    else:
        candidates = {"item ids": item_ids}
        if source_ids is not None:
            candidates["source indices"] = [str(s) for s in source_ids]
    name, keys = max(candidates.items(), key=lambda kv: len(set(kv[1]) & table.keys()))
    missing = [k for k in keys if k not in table]
    wanted = set(keys)
    extra = [k for k in table if k not in wanted]
    if missing or extra:
        parts = [f"the run has {len(keys)} items, the table {len(table)}"]
        if missing:
            parts.append(f"{len(missing)} of the run's items are not in it (first: {missing[0]!r})")
        if extra:
            parts.append(f"{len(extra)} of its keys are not the run's {name} (first: {extra[0]!r})")
        hint = "" if align == "row" else "; check `--align` (row for tables keyed by 0-based row)"
        raise DataError(f"table does not match this run's catalog: {'; '.join(parts)}{hint}", path,
                        field=(missing or extra)[0])
    return keys


def _parse(tokens: object, path: Path, key: str) -> list[int]:
    if not isinstance(tokens, list) or not tokens:
        raise DataError(f"expected a non-empty list of code tokens, got {_short(tokens)}", path, field=key)
    return [_code(token, level, path, key) for level, token in enumerate(tokens)]


def _code(token: object, level: int, path: Path, key: str) -> int:
    """One code: `<a_N>` / `<A_N>` with the level's letter, or a non-negative integer."""
    letter = chr(ord("a") + level) if level < 26 else "?"
    code: int | None = None
    if isinstance(token, int) and not isinstance(token, bool):
        code = token
    elif isinstance(token, str) and token.isascii():
        if PLAIN.fullmatch(token.strip()):
            code = int(token)
        elif (match := TOKEN.fullmatch(token.strip())) and match[1].lower() == letter:
            code = int(match[2])
    if code is None or code < 0:
        raise DataError(f"code {_short(token)} at level {level} is not of the form <{letter}_N>, "
                        f"<{letter.upper()}_N> or a non-negative integer", path, field=key)
    if code >= MAX_CODE:
        raise DataError(f"code {_short(token)} at level {level} is {code}, beyond the largest codebook mmgr takes "
                        f"({MAX_CODE})", path, field=key)
    return code


def _short(value: object, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
