"""MQL4GRec's multitask training (arXiv 2504.05314, ICLR 2025; the recipe SynGR's released scripts train), registered as
`training.objective: mql4grec` on the `unimodal` layout:

1. next-item in each modality: `<task:seq:text->text>` + text history -> next text SID, and the same for images
   (the layout's two decoding targets, every prefix of every training sequence);
2. next-item across modalities: `<task:seq:text->image>` + text history -> next image SID, and the reverse;
3. translation of an item's SID: `<task:text->image>` + its text SID -> its image SID, and the reverse (items with
   both modalities).

One cross-entropy over the mixed examples; at inference each modality's SID is generated from that modality's
history and the two ranked lists are fused (`decoding.fusion`). On T5 every prefix of every training sequence is an
example; on the item-level causal backbone (decoder-only) steps 1 and 2 are one window per task with a target at
every item (`<bos> <task:seq:a->b> [user] a(i_1) ... a(i_n)`, labels b(i_2) ... b(i_n): the head writes item i's
SID in modality b from the history before it in modality a), and step 3 is `<bos> <task:a->b> a(i) b(i)` with
labels on b(i). Switches: `training.multitask.cross_modal=false`
drops step 2, `translation=false` step 3 (with both off this is two unimodal TIGERs with fused lists).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from mmgr.config import MultitaskConfig
from mmgr.errors import MmgrError
from mmgr.layouts.base import prompt, translation_task
from mmgr.layouts.unimodal import UnimodalHistoryLayout, sequence_task
from mmgr.objectives.base import OBJECTIVES, Batching
from mmgr.training.data import IGNORE, EncodedExamples, causal_windows, prefix_examples
from mmgr.training.loop import TrainData, bucketed_train_data

if TYPE_CHECKING:
    from mmgr.inference.prepared import Prepared


class MultitaskObjective:
    min_modalities = 2
    backbones = ("t5", "item-causal")
    settings = "multitask"

    def text_fields(self, settings: MultitaskConfig) -> tuple[str, ...]:
        return ()

    def tasks(self, modalities: list[str]) -> tuple[str, ...]:
        """The cross-modal sequence prompts and the translation prompts (the layout declares seq:m->m)."""
        pairs = translation_pairs(modalities)
        return (*(sequence_task(a, b) for a, b in pairs), *(translation_task(a, b) for a, b in pairs))

    def train_data(self, prep: Prepared, batching: Batching, settings: MultitaskConfig) -> tuple[TrainData, int]:
        build = causal_multitask_examples if batching.decoder_only else multitask_examples
        examples = build(prep, batching.max_history, settings)
        return bucketed_train_data(examples, batching.batch_size, batching.seed), len(examples)


def unimodal_layout(prep: Prepared) -> UnimodalHistoryLayout:
    layout = prep.layout
    if type(layout) is not UnimodalHistoryLayout or len(layout.vocab.levels) != 2:       # not unimodal-wide
        raise MmgrError("the mql4grec objective trains on two modalities' SIDs with model.layout=unimodal")
    return layout


def sequence_pairs(modalities: list[str], settings: MultitaskConfig) -> list[tuple[str, str]]:
    """(history modality, target modality) of the sequence tasks: steps 1 and 2."""
    return [(a, b) for a in modalities for b in modalities if a == b or settings.cross_modal]


def translation_pairs(modalities: list[str]) -> list[tuple[str, str]]:
    """(source, target) of every pair of distinct modalities: step 3's directions (and step 2's prompts)."""
    return [(a, b) for a in modalities for b in modalities if a != b]


def with_both(prep: Prepared, modalities: list[str]) -> np.ndarray:
    """Items with every modality's SID (the ones step 3 translates)."""
    return np.flatnonzero(np.all([~prep.codes[m].missing for m in modalities], axis=0))


def multitask_examples(prep: Prepared, max_history: int, settings: MultitaskConfig) -> EncodedExamples:
    """Steps 1-3 of the module docstring as one list of examples, every prefix of every training sequence."""
    layout = unimodal_layout(prep)
    users, histories, targets = prefix_examples(prep.split.train, max_history)
    tokens = [layout.encoder_tokens(prep.user_ids[u], h) for u, h in zip(users.tolist(), histories, strict=True)]
    modalities = list(layout.vocab.levels)
    pairs = sequence_pairs(modalities, settings)
    inputs, labels, rows, who = [], [], [], []
    for source, target in pairs:                                               # steps 1 and 2
        inputs += [layout.source_input(source, target, row) for row in tokens]
        labels += list(layout.modality_tokens[target][targets])
        rows.append(targets)
        who.append(users)
    if settings.translation:                                                    # step 3
        both = with_both(prep, modalities)
        for source, target in translation_pairs(modalities):
            inputs += [prompt(layout.vocab, translation_task(source, target), layout.modality_tokens[source][i])
                       for i in both.tolist()]
            labels += list(layout.modality_tokens[target][both])
            rows.append(both)
            who.append(np.full(len(both), -1, dtype=np.int64))                # an item task: no user
    return EncodedExamples(inputs, labels, np.concatenate(rows), np.concatenate(who))


def causal_multitask_examples(prep: Prepared, max_history: int, settings: MultitaskConfig) -> EncodedExamples:
    """Steps 1-3 for the item-level causal backbone: one example per training window and sequence task, labels on
    every item after the window's first; one per item and translation direction."""
    layout = unimodal_layout(prep)
    vocab, width = layout.vocab, layout.history_width
    modalities, bos = list(vocab.levels), vocab.token("<bos>")
    windows = list(causal_windows(prep.split.train, max_history))
    inputs, labels, rows, who = [], [], [], []
    for source, target in sequence_pairs(modalities, settings):                   # steps 1 and 2
        task = vocab.task_token(sequence_task(source, target))
        for user, window in windows:
            head = [bos, task, *([vocab.user_token(prep.user_ids[user])] if layout.user_token else [])]
            inputs.append(np.concatenate([head, layout.modality_tokens[source][window].reshape(-1)]))
            labels.append(np.concatenate([np.full(len(head) + width, IGNORE),
                                          layout.modality_tokens[target][window[1:]].reshape(-1)]))
        rows.append(np.asarray([window[-1] for _, window in windows], dtype=np.int64))
        who.append(np.asarray([user for user, _ in windows], dtype=np.int64))
    if settings.translation:                                                    # step 3
        if layout.user_token:
            raise MmgrError("on model.kind=item-causal every input has the same head, and an item translation has "
                            "no user: set model.user_buckets=0 or training.multitask.translation=false")
        both = with_both(prep, modalities)
        for source, target in translation_pairs(modalities):
            head = [bos, vocab.task_token(translation_task(source, target))]
            pair = np.concatenate([layout.modality_tokens[source][both], layout.modality_tokens[target][both]], 1)
            inputs += [np.concatenate([head, row]) for row in pair]
            labels += [np.concatenate([np.full(len(head) + width, IGNORE), row[width:]]) for row in pair]
            rows.append(both)
            who.append(np.full(len(both), -1, dtype=np.int64))
    return EncodedExamples([np.asarray(x, dtype=np.int64) for x in inputs], labels, np.concatenate(rows),
                           np.concatenate(who))


OBJECTIVES.register("mql4grec")(MultitaskObjective())
