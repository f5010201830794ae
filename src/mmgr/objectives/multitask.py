"""MQL4GRec's multitask training (arXiv 2504.05314, ICLR 2025; the recipe SynGR's released scripts train), registered as
`training.objective: mql4grec` on the `unimodal` layout:

1. next-item in each modality: `<task:seq:text->text>` + text history -> next text SID, and the same for images
   (the layout's two decoding targets, every prefix of every training sequence);
2. next-item across modalities: `<task:seq:text->image>` + text history -> next image SID, and the reverse;
3. translation of an item's SID: `<task:text->image>` + its text SID -> its image SID, and the reverse (items with
   both modalities).

One cross-entropy over the mixed examples; at inference each modality's SID is generated from that modality's
history and the two ranked lists are fused (`decoding.fusion`). Switches: `training.multitask.cross_modal=false`
drops step 2, `translation=false` step 3 (with both off this is two unimodal TIGERs with fused lists).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from mmgr.config import MultitaskConfig
from mmgr.errors import MmgrError
from mmgr.layouts.base import prompt
from mmgr.layouts.unimodal import UnimodalHistoryLayout, sequence_task
from mmgr.objectives.base import OBJECTIVES, Batching
from mmgr.training.data import EncodedExamples, prefix_examples
from mmgr.training.loop import TrainData, bucketed_train_data

if TYPE_CHECKING:
    from mmgr.inference.prepared import Prepared


class MultitaskObjective:
    min_modalities = 2
    backbones = ("t5",)
    settings = "multitask"

    def text_fields(self, settings: MultitaskConfig) -> tuple[str, ...]:
        return ()

    def tasks(self, modalities: list[str]) -> tuple[str, ...]:
        """The cross-modal sequence prompts and the translation prompts (the layout declares seq:m->m)."""
        pairs = [(a, b) for a in modalities for b in modalities if a != b]
        return (*(sequence_task(a, b) for a, b in pairs), *(f"{a}->{b}" for a, b in pairs))

    def train_data(self, prep: Prepared, batching: Batching, settings: MultitaskConfig) -> tuple[TrainData, int]:
        examples = multitask_examples(prep, batching.max_history, settings)
        return bucketed_train_data(examples, batching.batch_size, batching.seed), len(examples)


def multitask_examples(prep: Prepared, max_history: int, settings: MultitaskConfig) -> EncodedExamples:
    """Steps 1-3 of the module docstring as one list of examples."""
    layout = prep.layout
    if not isinstance(layout, UnimodalHistoryLayout) or len(layout.vocab.levels) != 2:
        raise MmgrError("the mql4grec objective trains on two modalities' SIDs with model.layout=unimodal")
    users, histories, targets = prefix_examples(prep.split.train, max_history)
    tokens = [layout.encoder_tokens(prep.user_ids[u], h) for u, h in zip(users.tolist(), histories, strict=True)]
    modalities = list(layout.vocab.levels)
    pairs = [(a, b) for a in modalities for b in modalities if a == b or settings.cross_modal]
    inputs, labels, rows, who = [], [], [], []
    for source, target in pairs:                                               # steps 1 and 2
        inputs += [layout.source_input(source, target, row) for row in tokens]
        labels += list(layout.modality_tokens[target][targets])
        rows.append(targets)
        who.append(users)
    if settings.translation:                                                    # step 3
        both = np.flatnonzero(np.all([~prep.codes[m].missing for m in modalities], axis=0))
        for source, target in ((a, b) for a in modalities for b in modalities if a != b):
            inputs += [prompt(layout.vocab, f"{source}->{target}", layout.modality_tokens[source][i])
                       for i in both.tolist()]
            labels += list(layout.modality_tokens[target][both])
            rows.append(both)
            who.append(np.full(len(both), -1, dtype=np.int64))                # an item task: no user
    return EncodedExamples(inputs, labels, np.concatenate(rows), np.concatenate(who))


OBJECTIVES.register("mql4grec")(MultitaskObjective())
