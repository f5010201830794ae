"""Make every item's code tuple unique.

- `append` (TIGER): add one level whose code numbers the items sharing a tuple (0, 1, 2, ...). Its capacity,
  max(last codebook size, twice the largest group), is stored with the codes, so new items can be numbered later
  without refitting.
- `reassign` (MQL4GRec): an item that collides moves to its next-nearest last-level code whose tuple is free;
  the first item (catalog order) of each group keeps its code. Impossible when a prefix holds more items than the
  last codebook has codes: then the error says to use `append` or a larger codebook.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from mmgr.errors import MmgrError


def collision_rate(codes: np.ndarray) -> float:
    """Fraction of items whose code tuple is shared with at least one other item."""
    codes = np.asarray(codes)
    if codes.shape[0] == 0:
        return 0.0
    _, inverse, counts = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
    return float((counts[inverse.reshape(-1)] > 1).mean())


def append_level(codes: np.ndarray, capacity: int) -> tuple[np.ndarray, int]:
    """(codes with one more level numbering each tuple's items, the extra level's size)."""
    seen: dict[tuple, int] = defaultdict(int)
    extra = np.empty(len(codes), dtype=np.int64)
    for row, key in enumerate(map(tuple, codes.tolist())):
        extra[row] = seen[key]
        seen[key] += 1
    size = max(capacity, 2 * (int(extra.max(initial=0)) + 1))
    return np.concatenate([codes, extra[:, None]], axis=1), size


def reassign(codes: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Move colliding items to their nearest free last-level code (candidates: int[N, k], best first)."""
    codes = codes.copy()
    owners: dict[tuple, int] = {}
    movers = []
    for row, key in enumerate(map(tuple, codes.tolist())):
        if key in owners:
            movers.append(row)
        else:
            owners[key] = row
    for row in movers:
        prefix = tuple(codes[row, :-1].tolist())
        free = next((c for c in candidates[row].tolist() if (*prefix, c) not in owners), None)
        if free is None:
            raise MmgrError(f"cannot reassign item {row}: every candidate code under prefix {prefix} is taken; use "
                            "collisions=append or a larger last codebook")
        codes[row, -1] = free
        owners[(*prefix, free)] = row
    return codes
