"""`train` and `evaluate` on a run directory, for whichever engine the recipe's `model.kind` names.

Each engine registers itself in `ENGINES` (its module is loaded on first use, see `mmgr.parts`): `t5`, `causal`,
`item-causal` and `llm` (the generative path of every SID method, `engines/generative.py`) and `sasrec` (the
ID-based baseline, `engines/sasrec.py`). Stage functions never branch on a model kind. Ranking a trained run is
`mmgr.inference` (`load_ranker`), which imports none of this.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mmgr.config import Config
from mmgr.registry import Registry
from mmgr.rundir import RunDir


@dataclass(frozen=True)
class Engine:
    train: Callable[[RunDir, Config, bool], dict[str, Any]]
    evaluate: Callable[..., dict[str, Any]]                    # (run, config, progress) -> results
    needs_codes: bool = True                                   # reads semantic IDs (False: item-ID models)


ENGINES: Registry[Engine] = Registry("model kind")


def engine(config: Config) -> Engine:
    return ENGINES.get(config.model.kind)


def train_run(run: RunDir, config: Config, progress: bool = True) -> dict[str, Any]:
    return engine(config).train(run, config, progress)


def evaluate_run(run: RunDir, config: Config, progress: bool = True) -> dict[str, Any]:
    return engine(config).evaluate(run, config, progress)
