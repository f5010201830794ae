"""Import published semantic-ID tables (LC-Rec / LETTER / MQL4GRec `index.json`):
`{"<item>": ["<a_183>", "<b_70>", "<c_232>", "<d_6>"], ...}` -> codes int64[N, L] aligned with the catalog.
The level letter may be upper case (MQL4GRec's image tables write `<A_12>`)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Literal

import numpy as np

from mmgr.errors import DataError

TOKEN = re.compile(r"<([a-zA-Z])_(\d+)>")


def read_index(path: Path, item_ids: list[str], align: Literal["item_id", "row"] = "item_id") -> np.ndarray:
    """Codes for every catalog item. `align="row"`: the table's keys are 0-based catalog rows (LC-Rec files made
    from a P5 split number items P5 id - 1); `item_id`: keys are the catalog's item ids."""
    try:
        table = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise DataError("not found", path) from None
    except json.JSONDecodeError as exc:
        raise DataError(f"not valid JSON: {exc.msg}", path, exc.lineno) from None
    if not isinstance(table, dict) or not table:
        raise DataError("expected a non-empty object {item: [code tokens]}", path)
    keys = [str(i) for i in range(len(item_ids))] if align == "row" else item_ids
    missing = [k for k in keys if k not in table]
    if missing:
        raise DataError(f"{len(missing)} catalog items have no codes (first: {missing[0]!r}); check `align`", path,
                        field=missing[0])
    rows = [_parse(table[k], path, k) for k in keys]
    depth = {len(r) for r in rows}
    if len(depth) != 1:
        raise DataError(f"items have different numbers of codes: {sorted(depth)}", path)
    return np.array(rows, dtype=np.int64)


def _parse(tokens: object, path: Path, key: str) -> list[int]:
    if not isinstance(tokens, list) or not tokens:
        raise DataError(f"expected a list of code tokens, got {tokens!r}", path, field=key)
    codes = []
    for level, token in enumerate(tokens):
        match = TOKEN.fullmatch(str(token))
        if not match or ord(match[1].lower()) - ord("a") != level:
            raise DataError(f"code {token!r} at level {level} is not of the form <{chr(97 + level)}_N>", path,
                            field=key)
        codes.append(int(match[2]))
    return codes
