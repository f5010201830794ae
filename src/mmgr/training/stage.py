"""`train`, `evaluate` and `recommend` on a run directory, for whichever engine the recipe's `model.kind` names.

Each engine registers itself in `ENGINES`: `t5` (the generative path of every SID method, `training/generative.py`)
and `sasrec` (the ID-based baseline, `training/sasrec_stage.py`). Stage functions never branch on a model kind.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mmgr.config import Config
from mmgr.registry import Registry
from mmgr.rundir import RunDir

ENGINE_MODULES = ("mmgr.training.generative", "mmgr.training.sasrec_stage")


@dataclass(frozen=True)
class Engine:
    train: Callable[[RunDir, Config, bool], dict[str, Any]]
    evaluate: Callable[..., dict[str, Any]]                    # (run, config, progress) -> results
    recommend: Callable[[RunDir, Config, str, int], list[dict[str, Any]]]
    needs_codes: bool = True                                   # reads semantic IDs (False: item-ID models)


ENGINES: Registry[Engine] = Registry("model kind")


def engine(config: Config) -> Engine:
    for module in ENGINE_MODULES:   # each registers its engine on first import
        importlib.import_module(module)
    return ENGINES.get(config.model.kind)


def train_run(run: RunDir, config: Config, progress: bool = True) -> dict[str, Any]:
    return engine(config).train(run, config, progress)


def evaluate_run(run: RunDir, config: Config, progress: bool = True) -> dict[str, Any]:
    return engine(config).evaluate(run, config, progress)


def recommend(run: RunDir, config: Config, user_id: str, k: int) -> list[dict[str, Any]]:
    """Top-k items (with titles) for a known user, from their full history."""
    return engine(config).recommend(run, config, user_id, k)
