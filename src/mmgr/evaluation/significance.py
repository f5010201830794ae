"""Paired bootstrap over users: is run B better than run A on a metric, and by how much?"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from mmgr.errors import MmgrError


def bootstrap_means(values: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """(resamples,) means of `values` over users resampled with replacement (seeded)."""
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    for start in range(0, resamples, 1000):                       # bounded memory: 1000 x U at a time
        count = min(1000, resamples - start)
        means[start:start + count] = values[rng.integers(0, values.size, size=(count, values.size))].mean(axis=1)
    return means


def paired_bootstrap(a: np.ndarray, b: np.ndarray, resamples: int = 10_000, confidence: float = 0.95,
                     seed: int = 0) -> dict[str, float]:
    """Mean of (b - a) over users with a percentile confidence interval and a two-sided bootstrap p-value.

    `a` and `b` are the same users' per-user metric values (aligned)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(f"need two aligned non-empty per-user arrays, got {a.shape} and {b.shape}")
    diff = b - a
    means = bootstrap_means(diff, resamples, seed)
    tail = (1 - confidence) / 2
    p_value = 2 * min((means <= 0).mean(), (means >= 0).mean())
    return {"mean_difference": float(diff.mean()), "low": float(np.quantile(means, tail)),
            "high": float(np.quantile(means, 1 - tail)), "p_value": float(min(1.0, p_value)),
            "users": int(diff.size)}


def compare_runs(run_a: Path, run_b: Path, split: str = "test", metrics: tuple[str, ...] = ("ndcg@10", "hr@10"),
                 resamples: int = 10_000, seed: int = 0) -> dict[str, Any]:
    """Paired bootstrap of B - A on each metric over the users both runs evaluated on `split` (their per-user
    Parquet files); the two runs must have held out the same target for every shared user."""
    a, b = (_per_user(run, split) for run in (run_a, run_b))
    shared = sorted(set(a) & set(b))
    if not shared:
        raise MmgrError(f"{run_a} and {run_b} have no {split} users in common")
    if any(a[u]["target"] != b[u]["target"] for u in shared):
        raise MmgrError(f"{run_a} and {run_b} hold out different {split} items for the same users; compare runs "
                        "of the same data and split")
    missing = [m for m in metrics if m not in a[shared[0]] or m not in b[shared[0]]]
    if missing:
        raise MmgrError(f"metric(s) {', '.join(missing)} not in both per-user files; known: "
                        f"{', '.join(k for k in a[shared[0]] if k not in ('user_id', 'target', 'ranked'))}")
    result: dict[str, Any] = {"split": split, "users": len(shared), "only_in_a": len(a) - len(shared),
                              "only_in_b": len(b) - len(shared), "metrics": {}}
    for metric in metrics:
        va, vb = (np.array([rows[u][metric] for u in shared]) for rows in (a, b))
        result["metrics"][metric] = {"a": float(va.mean()), "b": float(vb.mean()),
                                     **paired_bootstrap(va, vb, resamples, seed=seed)}
    return result


def _per_user(run: Path, split: str) -> dict[str, dict[str, Any]]:
    path = Path(run) / f"per_user_{split}.parquet"
    if not path.is_file():
        raise MmgrError(f"{path}: not found; run `mmgr evaluate {run}` first")
    return {row["user_id"]: row for row in pq.read_table(path).drop_columns(["ranked"]).to_pylist()}
