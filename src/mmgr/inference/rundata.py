"""What every engine's stages read from a run (dataset, user ids, leave-one-out split) and the per-user results
they all write, so runs of different engines can be compared user by user."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from mmgr.config import Config
from mmgr.data.dataset import Dataset
from mmgr.data.splits import Examples, LeaveOneOut, leave_one_out
from mmgr.errors import MmgrError
from mmgr.evaluation.metrics import summarize
from mmgr.io import write_json_atomic, write_parquet_atomic
from mmgr.rundir import RunDir


@dataclass
class RunData:
    """The dataset, user ids by row, the leave-one-out split."""

    dataset: Dataset
    user_ids: list[str]
    split: LeaveOneOut


def load_run_data(run: RunDir, config: Config) -> RunData:
    manifest = run.manifest()
    if "dataset" not in manifest:
        raise MmgrError(f"{run.path}: no dataset; run `mmgr data import` first")
    dataset = Dataset.load(run.path, manifest["dataset"]["name"])
    split = leave_one_out(dataset.item_sequences(), config.split.max_history)
    return RunData(dataset, dataset.sequences["user_id"].to_pylist(), split)


def user_row(data: RunData, user_id: str) -> int:
    try:
        return data.user_ids.index(user_id)
    except ValueError:
        raise MmgrError(f"unknown user {user_id!r}") from None


def ranked_rows(data: RunData, items: np.ndarray, scores: np.ndarray) -> list[dict]:
    """One user's ranked item indices and scores as rows with item ids and titles (padding -1 dropped)."""
    titles, ids = data.dataset.items["title"].to_pylist(), data.dataset.items["item_id"].to_pylist()
    return [{"rank": r + 1, "item_id": ids[i], "title": titles[i], "score": float(s)}
            for r, (i, s) in enumerate(zip(items.tolist(), scores.tolist(), strict=True)) if i >= 0]


def evaluate_splits(run: RunDir, data: RunData, splits: tuple[str, ...], protocol: dict[str, Any],
                    rank: Callable[[Examples], tuple[dict[str, np.ndarray], np.ndarray]]) -> dict[str, Any]:
    """Every engine's `evaluate` stage: `rank(examples)` -> (per-user metrics, ranked lists) for each split, then
    results.json, per_user_<split>.parquet and the manifest's `evaluate` summary."""
    results: dict[str, Any] = {"protocol": protocol}
    for name in splits:
        examples = getattr(data.split, name)
        start = time.perf_counter()
        metrics, ranked = rank(examples)
        seconds = time.perf_counter() - start
        results[name] = {**summarize(metrics), "users": len(examples), "users_per_second": len(examples) / seconds}
        save_per_user(run, name, data.user_ids, examples, metrics, ranked)
    write_json_atomic(run.path / "results.json", results)
    run.record("evaluate", {name: results[name] for name in splits})
    return results


def save_per_user(run: RunDir, name: str, user_ids: list[str], examples: Examples, metrics: dict[str, np.ndarray],
                  ranked: np.ndarray) -> None:
    """per_user_<split>.parquet: user, target, ranked list and every metric, for paired significance tests."""
    table = pa.table({"user_id": [user_ids[u] for u in examples.users.tolist()],
                      "target": examples.targets, "ranked": [r[r >= 0].tolist() for r in ranked],
                      **{k: v for k, v in metrics.items() if not k.startswith("recall")}})
    write_parquet_atomic(run.path / f"per_user_{name}.parquet", table)
