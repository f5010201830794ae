"""Paired comparisons of two suite rows over the same test users: each row's per-user test metric averaged over its
seeds, then the paired bootstrap of the difference (`mmgr.evaluation.significance.paired_bootstrap`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from mmgr.errors import MmgrError
from mmgr.evaluation.significance import paired_bootstrap

COMPARED = ("ndcg@10", "hr@10")


def p_text(p: float) -> str:
    """A bootstrap p-value as a reader wants it: p<0.001 rather than p=0.000."""
    return "p<0.001" if p < 0.001 else f"p={p:.3f}"


def interval_text(diff: float, low: float, high: float, p: float | None = None) -> str:
    """`+0.0012 [-0.0003, +0.0027]`, then `, p=0.120` when a p-value is given."""
    return f"{diff:+.4f} [{low:+.4f}, {high:+.4f}]" + ("" if p is None else f", {p_text(p)}")


def bootstrap_text(test: dict[str, float]) -> str:
    """`+0.0012 [-0.0003, +0.0027], p=0.120` of a `paired_bootstrap` result."""
    return interval_text(test["mean_difference"], test["low"], test["high"], test["p_value"])


def per_user_means(paths: list[Path]) -> dict[str, dict[str, float]]:
    """user -> metric -> mean over the runs (seeds) of the per-user test metric; runs must hold out the same items."""
    tables = [{row["user_id"]: row for row in pq.read_table(p / "per_user_test.parquet",
                                                             columns=["user_id", "target", *COMPARED]).to_pylist()}
              for p in paths]
    for path, table in zip(paths[1:], tables[1:], strict=True):
        if table.keys() != tables[0].keys() or any(tables[0][u]["target"] != row["target"] for u, row in table.items()):
            raise MmgrError(f"{path} holds out other test items than {paths[0]}; seeds must share the split")
    return {user: {m: float(np.mean([t[user][m] for t in tables])) for m in COMPARED} for user in tables[0]}


def versus(base: dict[str, dict[str, float]], mine: dict[str, dict[str, float]],
           resamples: int) -> dict[str, dict[str, Any]]:
    """Paired bootstrap of row - baseline on each compared metric over the users both evaluated."""
    users = sorted(set(base) & set(mine))
    out = {}
    for metric in COMPARED:
        test = paired_bootstrap(np.array([base[u][metric] for u in users]), np.array([mine[u][metric] for u in users]),
                                resamples)
        out[metric] = {"diff": round(test["mean_difference"], 6), "ci": [round(test["low"], 6),
                                                                          round(test["high"], 6)],
                       "p": test["p_value"], "users": test["users"]}
    return out
