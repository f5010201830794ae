"""Fusion of several ranked lists per user into one (SynGR: the text-SID and the image-SID beam searches).

Every rule takes lists of (items int[U, K], scores float[U, K]) best first (-1 / -inf pad a short row) and returns the
fused top-k in the same shape. Scores are length-normalised log-probabilities (summed / (SID length + 1), as Hugging
Face normalises beam scores; `evaluation.protocol`), so a bonus means the same for SIDs of any length. Ties keep the
order of first appearance (list order, then rank).

- `mean-bonus` (SynGR): an item found by every list scores its mean log-probability plus `bonus`; an item found by
  some lists scores the mean of the log-probabilities it has.
- `rrf`: reciprocal-rank fusion, sum over lists of 1 / (60 + rank), rank 1-based (scores play no part).
- `max`: an item's best log-probability over the lists.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from mmgr.registry import Registry

RankedList = tuple[np.ndarray, np.ndarray]                    # items (U, K), scores (U, K)
Rule = Callable[[list[float], list[int], int, float], float]   # (scores, ranks, lists, bonus) -> score
RRF_K = 60

FUSIONS: Registry[Rule] = Registry("fusion rule")


@FUSIONS.register("mean-bonus")
def mean_bonus(scores: list[float], ranks: list[int], lists: int, bonus: float) -> float:
    return float(np.mean(scores)) + (bonus if len(scores) == lists else 0.0)


@FUSIONS.register("rrf")
def reciprocal_rank(scores: list[float], ranks: list[int], lists: int, bonus: float) -> float:
    return sum(1.0 / (RRF_K + rank + 1) for rank in ranks)


@FUSIONS.register("max")
def best_score(scores: list[float], ranks: list[int], lists: int, bonus: float) -> float:
    return max(scores)


def fuse(ranked: list[RankedList], rule: str, top_k: int, bonus: float = 0.0) -> RankedList:
    """The fused (items int64[U, top_k], scores float32[U, top_k]) of several ranked lists."""
    score_of = FUSIONS.get(rule)
    users = len(ranked[0][0])
    items = np.full((users, top_k), -1, dtype=np.int64)
    scores = np.full((users, top_k), -np.inf, dtype=np.float32)
    for user in range(users):
        found: dict[int, tuple[list[float], list[int]]] = {}
        for list_items, list_scores in ranked:
            for rank, (item, score) in enumerate(zip(list_items[user].tolist(), list_scores[user].tolist(),
                                                     strict=True)):
                if item >= 0:
                    entry = found.setdefault(item, ([], []))
                    entry[0].append(score)
                    entry[1].append(rank)
        fused = sorted(((score_of(s, r, len(ranked), bonus), i) for i, (s, r) in found.items()),
                       key=lambda pair: -pair[0])[:top_k]                  # stable: first appearance wins ties
        items[user, :len(fused)] = [item for _, item in fused]
        scores[user, :len(fused)] = [score for score, _ in fused]
    return items, scores
