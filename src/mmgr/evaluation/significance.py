"""Paired bootstrap over users: is run B better than run A on a metric, and by how much?"""

from __future__ import annotations

import numpy as np


def paired_bootstrap(a: np.ndarray, b: np.ndarray, resamples: int = 10_000, confidence: float = 0.95,
                     seed: int = 0) -> dict[str, float]:
    """Mean of (b - a) over users with a percentile confidence interval and a two-sided bootstrap p-value.

    `a` and `b` are the same users' per-user metric values (aligned)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(f"need two aligned non-empty per-user arrays, got {a.shape} and {b.shape}")
    diff = b - a
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    for start in range(0, resamples, 1000):                       # bounded memory: 1000 x U at a time
        count = min(1000, resamples - start)
        means[start:start + count] = diff[rng.integers(0, diff.size, size=(count, diff.size))].mean(axis=1)
    tail = (1 - confidence) / 2
    p_value = 2 * min((means <= 0).mean(), (means >= 0).mean())
    return {"mean_difference": float(diff.mean()), "low": float(np.quantile(means, tail)),
            "high": float(np.quantile(means, 1 - tail)), "p_value": float(min(1.0, p_value)),
            "users": int(diff.size)}
