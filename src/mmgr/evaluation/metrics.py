"""Ranking metrics as pure functions of ranked lists and targets (one relevant item per user).

`ranked` is int[U, K] (item indices, best first, -1 for empty slots); `targets` is int[U]. With one target,
Recall@K equals HR@K. NDCG@K = 1 / log2(rank + 2) when the target is at 0-based `rank` < K; MRR@K = 1 / (rank + 1).
"""

from __future__ import annotations

import numpy as np

DEFAULT_KS = (1, 5, 10, 20)


def target_ranks(ranked: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """int[U]: 0-based position of each user's target in its list, or K (past the end) when absent."""
    ranked, targets = np.asarray(ranked), np.asarray(targets)
    found = ranked == targets[:, None]                                   # (U, K)
    return np.where(found.any(axis=1), found.argmax(axis=1), ranked.shape[1])


def per_user(ranked: np.ndarray, targets: np.ndarray, ks: tuple[int, ...] = DEFAULT_KS) -> dict[str, np.ndarray]:
    """Each metric per user: hr@k, recall@k, ndcg@k, mrr@k for every k (needs K >= max(ks))."""
    if ranked.shape[1] < max(ks):
        raise ValueError(f"lists of length {ranked.shape[1]} cannot give metrics @{max(ks)}")
    ranks = target_ranks(ranked, targets)
    out: dict[str, np.ndarray] = {}
    for k in ks:
        hit = ranks < k
        out[f"hr@{k}"] = hit.astype(np.float64)
        out[f"recall@{k}"] = out[f"hr@{k}"]
        out[f"ndcg@{k}"] = np.where(hit, 1.0 / np.log2(ranks + 2.0), 0.0)
        out[f"mrr@{k}"] = np.where(hit, 1.0 / (ranks + 1.0), 0.0)
    return out


def summarize(metrics: dict[str, np.ndarray]) -> dict[str, float]:
    return {name: float(values.mean()) for name, values in metrics.items()}
