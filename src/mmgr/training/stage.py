"""`train`, `evaluate` and `recommend` on a run directory, for whichever engine the recipe's `model.kind` names.

Each engine registers itself in `ENGINES` (its module is loaded on first use, see `mmgr.parts`): `t5`, `causal`,
`item-causal` and `llm` (the generative path of every SID method, `training/generative.py`) and `sasrec` (the
ID-based baseline, `training/sasrec_stage.py`). Stage functions never
branch on a model kind. An engine's `ranker` loads a trained run once and ranks the catalog for any histories: the
one path behind `mmgr recommend`, batch scoring and the HTTP server.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from mmgr.config import Config
from mmgr.registry import Registry
from mmgr.rundir import RunDir
from mmgr.training.rundata import RunData, ranked_rows, user_row


class Ranker(Protocol):
    """A trained run, loaded once: ranks the catalog for histories of item indices."""

    data: RunData
    explains: tuple[str, ...]      # text fields `explain` writes per item; () where the model cannot explain

    def rank(self, user_ids: list[str], histories: list[np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
        """(items int64[U, k], scores float32[U, k]) best first; -1 / -inf pad rows with fewer items."""
        ...

    def batch_key(self, k: int) -> int:
        """Requests whose `k` share a key can be ranked in one call with their largest k: each gets the first k
        items of what it gets alone (a beam search's width for `k`; constant for an exact ranker)."""
        ...

    def decoding_tables(self) -> dict[str, np.ndarray]:
        """Each decoding target's item token table (int64[N, L], what its trie holds); {} for item-id models."""
        ...

    def explain(self, items: list[int]) -> list[dict[str, str]]:
        """Per item index, text the model writes about the item from its SID (field -> text); MmgrError for
        models that were not trained to (only TriAlignGR's tmt runs are)."""
        ...

    def extended(self, config: Config, codes: dict, items: Any) -> Ranker:
        """The ranker over the catalog plus new `items` (pyarrow rows) whose codes are the last rows of `codes`;
        engines that cannot recommend unseen items raise MmgrError."""
        ...


@dataclass(frozen=True)
class Engine:
    train: Callable[[RunDir, Config, bool], dict[str, Any]]
    evaluate: Callable[..., dict[str, Any]]                    # (run, config, progress) -> results
    ranker: Callable[[RunDir, Config], Ranker]
    needs_codes: bool = True                                   # reads semantic IDs (False: item-ID models)


ENGINES: Registry[Engine] = Registry("model kind")


def engine(config: Config) -> Engine:
    return ENGINES.get(config.model.kind)


def train_run(run: RunDir, config: Config, progress: bool = True) -> dict[str, Any]:
    return engine(config).train(run, config, progress)


def evaluate_run(run: RunDir, config: Config, progress: bool = True) -> dict[str, Any]:
    return engine(config).evaluate(run, config, progress)


def load_ranker(run: RunDir, config: Config) -> Ranker:
    return engine(config).ranker(run, config)


def recommend(run: RunDir, config: Config, user_id: str, k: int, explain: bool = False) -> list[dict[str, Any]]:
    """Top-k items (with titles) for a known user, from their full history; with `explain`, each row's
    `explanation` is what the model writes about the item from its SID."""
    ranker = load_ranker(run, config)
    row = user_row(ranker.data, user_id)
    items, scores = ranker.rank([user_id], [ranker.data.dataset.item_sequences()[row]], k)
    rows = ranked_rows(ranker.data, items[0], scores[0])
    if explain:
        for entry, text in zip(rows, ranker.explain([int(i) for i in items[0] if i >= 0]), strict=True):
            entry["explanation"] = text
    return rows
