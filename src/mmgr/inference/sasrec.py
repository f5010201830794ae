"""A trained SASRec run as a `Ranker`: exact top-k of the softmax over every item after the last history position,
the same ranking for validation, `mmgr evaluate` and serving."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from torch import nn

from mmgr.config import Config
from mmgr.data.splits import Examples
from mmgr.errors import MmgrError
from mmgr.evaluation.metrics import DEFAULT_KS, per_user
from mmgr.inference.ranker import RANKERS
from mmgr.inference.rundata import RunData, load_run_data
from mmgr.models.sasrec import SASRec, build_sasrec, rank_all_items
from mmgr.rundir import RunDir
from mmgr.weights import BEST, load_state, load_weights


def evaluate_sasrec(model: nn.Module, examples: Examples, top_k: int = 20, batch_size: int = 256,
                    ks: tuple[int, ...] = DEFAULT_KS, progress: bool = False
                    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Per-user metrics (hr/recall/ndcg/mrr @ each k <= top_k) and the ranked lists for `examples`."""
    ranked, _ = rank_all_items(model, examples.histories, top_k, batch_size, progress)
    return per_user(ranked, examples.targets, tuple(k for k in ks if k <= ranked.shape[1])), ranked


def load_sasrec(run: RunDir, config: Config, num_items: int) -> SASRec:
    """The best weights of the run (`model.safetensors`), checked against the dataset and config."""
    tensors, info = load_weights(run.path / BEST)
    expected = {"model": "sasrec", "num_items": num_items, "max_history": config.split.max_history}
    if {key: info.get(key) for key in expected} != expected:
        raise MmgrError(f"{run.path / BEST} does not match this run's SASRec ({expected}; it records "
                        f"{ {key: info.get(key) for key in expected} }); re-run `mmgr train`")
    model = build_sasrec(config.model, num_items, config.split.max_history, config.seed)
    load_state(model, tensors)
    return model.eval()


@dataclass
class SASRecRanker:
    """A trained SASRec run: exact top-k of the softmax over every item after the last history position."""

    data: RunData
    model: SASRec
    max_history: int
    explains: tuple[str, ...] = ()                 # item ids carry no text to write

    def rank(self, user_ids: list[str], histories: list[np.ndarray],
             k: int | Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        return rank_all_items(self.model, [np.asarray(h)[-self.max_history:] for h in histories], int(np.max(k)))

    def searched(self, k: int, need: int) -> int:
        return need                                # exact scores: any width costs the same

    def batch_key(self, k: int) -> int:
        return 0                                   # exact top-k: any k's list starts with a smaller k's

    def decoding_tables(self) -> dict[str, np.ndarray]:
        return {}                                  # ranks every item exactly: no trie

    def explain(self, items: list[int]) -> list[dict[str, str]]:
        raise MmgrError("SASRec has no semantic IDs to explain; explanations come from a TriAlignGR run "
                        "(training.objective=tmt with a sid->title task)")

    def extended(self, codes: dict, items: object) -> SASRecRanker:
        raise MmgrError("SASRec scores only the items it was trained on (one embedding per item id); onboarding "
                        "new items needs a semantic-ID method (TIGER, MGR, SynGR)")


def sasrec_ranker(run: RunDir, config: Config) -> SASRecRanker:
    data = load_run_data(run, config)
    return SASRecRanker(data, load_sasrec(run, config, data.dataset.num_items), config.split.max_history)


RANKERS.register("sasrec")(sasrec_ranker)
