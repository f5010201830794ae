"""Fit a tokenizer on one modality's features, make codes unique, diagnose; assign codes to new items later."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from mmgr.encoders.base import Features
from mmgr.errors import MmgrError
from mmgr.tokenizers.base import SemanticTokenizer
from mmgr.tokenizers.codes import ModalityCodes
from mmgr.tokenizers.collisions import append_level, collision_rate, reassign
from mmgr.tokenizers.diagnostics import diagnose

Collisions = Literal["append", "reassign"]
REASSIGN_CANDIDATES = 64


def tokenize_features(features: Features, tokenizer: SemanticTokenizer,
                      collisions: Collisions) -> tuple[ModalityCodes, dict[str, Any]]:
    """Fit on the items that have this modality, code every item (placeholders for the rest, flagged), resolve
    collisions over the whole catalog, and diagnose the fitted items."""
    present = ~features.missing
    if present.sum() == 0:
        raise MmgrError(f"no item has {features.modality} features to fit a tokenizer on")
    tokenizer.fit(features.vectors[present])
    raw = tokenizer.transform(features.vectors)                                   # (N, L)
    resolved, sizes = _resolve(raw, features.vectors, tokenizer, collisions)
    report = diagnose(features.vectors[present], tokenizer, raw[present], resolved[present],
                      list(tokenizer.codebook_sizes_))
    report.update(tokenizer=tokenizer.name, collisions=collisions, modality=features.modality,
                  missing_items=int(features.missing.sum()), collision_rate_after_all_items=collision_rate(resolved))
    info = {"tokenizer": tokenizer.name, "collisions": collisions, "source_model": features.model_id}
    return ModalityCodes(features.modality, resolved, sizes, features.missing.copy(), info), report


def assign_new(tokenizer: SemanticTokenizer, existing: ModalityCodes, vectors: np.ndarray,
               collisions: Collisions) -> np.ndarray:
    """Codes for new items without refitting, unique against the existing items and each other."""
    raw = tokenizer.transform(vectors)
    if collisions == "append":
        return np.concatenate([raw, appended_codes(existing, raw)[:, None]], axis=1)
    candidates = tokenizer.candidates(vectors, REASSIGN_CANDIDATES)              # (M, k)
    placeholder = np.zeros((len(existing.codes), candidates.shape[1]), dtype=np.int64)  # existing items never move
    return reassign(np.concatenate([existing.codes, raw]), np.concatenate([placeholder, candidates]))[
        len(existing.codes):]


def appended_codes(existing: ModalityCodes, raw: np.ndarray) -> np.ndarray:
    """The collision code of each new item whose semantic codes are a row of `raw` (M, L - 1): one past the largest
    among the existing items and the earlier new rows with the same codes. Per distinct new tuple, one pass over the
    existing items' first code and then over the few that match (a catalog-sized dictionary is never built)."""
    codes, capacity = existing.codes, existing.sizes[-1]
    last: dict[tuple, int] = {}
    numbers = []
    for key in map(tuple, raw.tolist()):
        last[key] = (last[key] if key in last else _largest_collision_code(codes, key)) + 1
        if last[key] >= capacity:
            raise MmgrError(f"prefix {key} already holds {capacity} items, the capacity of the disambiguation "
                            "level; refit the tokenizer with the new items")
        numbers.append(last[key])
    return np.array(numbers, dtype=np.int64)


def _largest_collision_code(codes: np.ndarray, key: tuple) -> int:
    """The largest collision code (last column) among the rows of `codes` whose other codes are `key`; -1 if none."""
    rows = np.flatnonzero(codes[:, 0] == key[0])
    for level, code in enumerate(key[1:], start=1):
        rows = rows[codes[rows, level] == code]
    return int(codes[rows, -1].max(initial=-1))


def appended_codes_reference(existing: ModalityCodes, raw: np.ndarray) -> np.ndarray:
    """`appended_codes` as a readable dictionary of every existing tuple (the reference in tests)."""
    taken: dict[tuple, int] = {}
    for row in existing.codes.tolist():
        taken[tuple(row[:-1])] = max(taken.get(tuple(row[:-1]), -1), row[-1])
    numbers = []
    for key in map(tuple, raw.tolist()):
        taken[key] = taken.get(key, -1) + 1
        if taken[key] >= existing.sizes[-1]:
            raise MmgrError(f"prefix {key} already holds {existing.sizes[-1]} items, the capacity of the "
                            "disambiguation level; refit the tokenizer with the new items")
        numbers.append(taken[key])
    return np.array(numbers, dtype=np.int64)


def _resolve(raw: np.ndarray, vectors: np.ndarray, tokenizer: SemanticTokenizer,
             collisions: Collisions) -> tuple[np.ndarray, list[int]]:
    sizes = list(tokenizer.codebook_sizes_)
    if collisions == "append":
        codes, extra = append_level(raw, capacity=sizes[-1])
        return codes, [*sizes, extra]
    return reassign(raw, tokenizer.candidates(vectors, REASSIGN_CANDIDATES)), sizes
