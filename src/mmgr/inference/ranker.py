"""What a trained run serves: a `Ranker` loaded once that ranks the catalog for any histories. The one path behind
`mmgr recommend`, `mmgr evaluate`, validation, batch scoring and the HTTP server.

Each model kind registers the loader of its ranker in `RANKERS` (`inference/generative.py` for `t5`, `causal`,
`item-causal` and `llm`; `inference/sasrec.py` for `sasrec`); its module is loaded on first use (`mmgr.parts`).
Nothing here imports training code.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from mmgr.config import Config
from mmgr.inference.rundata import RunData, ranked_rows, user_row
from mmgr.registry import Registry
from mmgr.rundir import RunDir


class Ranker(Protocol):
    """A trained run, loaded once: ranks the catalog for histories of item indices."""

    data: RunData
    explains: tuple[str, ...]      # text fields `explain` writes per item; () where the model cannot explain

    def rank(self, user_ids: list[str], histories: list[np.ndarray],
             k: int | Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """(items int64[U, K], scores float32[U, K]) best first, K the largest k; -1 / -inf pad rows with fewer
        items. `k` per row or for all; a row's first k items are what it gets alone with its k."""
        ...

    def searched(self, k: int, need: int) -> int:
        """The width of the first search for a request of `k` items that `need`s that many to keep k after leaving
        out its history: a beam search's own width (at least `decoding.beam_size`, what evaluation decodes with;
        searched again at `need` only if the history took its beams); `need` for an exact ranker, whose width costs
        nothing."""
        ...

    def batch_key(self, k: int) -> int:
        """Requests whose `k` share a key can be ranked in one call, each with its own k (constant where any ks mix:
        a beam search with a width per row, an exact ranker; `k` itself where a result depends on it: fused lists)."""
        ...

    def decoding_tables(self) -> dict[str, np.ndarray]:
        """Each decoding target's item token table (int64[N, L], what its trie holds); {} for item-id models."""
        ...

    def explain(self, items: list[int]) -> list[dict[str, str]]:
        """Per item index, text the model writes about the item from its SID (field -> text); MmgrError for
        models that were not trained to (only TriAlignGR's tmt runs are)."""
        ...

    def extended(self, codes: dict, items: Any) -> Ranker:
        """The ranker over the catalog plus new `items` (pyarrow rows) whose codes are the last rows of `codes`;
        engines that cannot recommend unseen items raise MmgrError."""
        ...


RANKERS: Registry[Callable[[RunDir, Config], Ranker]] = Registry("ranker")


def load_ranker(run: RunDir, config: Config) -> Ranker:
    return RANKERS.get(config.model.kind)(run, config)


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
