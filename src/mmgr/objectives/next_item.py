"""`next-item`: the next item's tokens after each history (TIGER, MGR-EF/LF/LF++). The backbone says how examples
are cut: every prefix of every training sequence for an encoder-decoder (T5), windows with a target at every item
for a decoder-only model."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mmgr.objectives.base import OBJECTIVES, Batching, SidsOnly
from mmgr.training.data import EncodedExamples, causal_examples, encode_examples, prefix_examples
from mmgr.training.loop import TrainData, bucketed_train_data

if TYPE_CHECKING:
    from mmgr.inference.prepared import Prepared


def next_item_examples(prep: Prepared, batching: Batching) -> EncodedExamples:
    """The run's next-item examples, cut as its backbone reads them."""
    if batching.decoder_only:
        return causal_examples(prep.layout, prep.user_ids, prep.split.train, batching.max_history)
    users, histories, targets = prefix_examples(prep.split.train, batching.max_history)
    return encode_examples(prep.layout, prep.user_ids, users, histories, targets)


class NextItem(SidsOnly):
    backbones = None

    def tasks(self, modalities: list[str]) -> tuple[str, ...]:
        return ()

    def train_data(self, prep: Prepared, batching: Batching, settings: None) -> tuple[TrainData, int]:
        examples = next_item_examples(prep, batching)
        return bucketed_train_data(examples, batching.batch_size, batching.seed), len(examples)


OBJECTIVES.register("next-item")(NextItem())
