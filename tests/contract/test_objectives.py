"""Every registered training objective (main and alignment) passes the same checks: deterministic batches, padded
labels that are never trained on, declared task prompts, and a finite loss whose gradient reaches the model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmgr.engines.method import stage_data
from mmgr.inference.generative import build_model
from mmgr.layouts import LAYOUTS
from mmgr.layouts.base import token_modalities
from mmgr.objectives.base import ALIGNMENTS, OBJECTIVES
from mmgr.training.data import IGNORE
from tests.helpers import LAYOUT_OF, N, prepared, registered


@pytest.fixture(params=[*OBJECTIVES.names(), *ALIGNMENTS.names()])
def objective(request):
    return request.param


def test_batches_are_deterministic_and_cover_every_example(objective):
    prep, config = prepared(objective)
    data, count = stage_data(registered(objective), prep, config)
    first = data.batches(0)
    assert [b.tolist() for b in first] == [b.tolist() for b in data.batches(0)] and count > 0
    rows = sum(len(data.collate(b)["labels"]) for b in first)
    assert rows in (count, count - count % 8, count - 1)                # every example (contrastive: full batches)


def test_labels_pad_with_ignore_and_inputs_use_declared_tasks(objective):
    prep, config = prepared(objective)
    data, _ = stage_data(registered(objective), prep, config)
    vocab = prep.layout.vocab
    declared = LAYOUTS.get(LAYOUT_OF.get(objective, "late-fusion")).tasks(list(vocab.levels)) + \
        registered(objective).tasks(list(vocab.levels))
    task_tokens = {vocab.task_token(t) for t in declared}
    for index in data.batches(0):
        batch = data.collate(index)
        ids, mask = batch["input_ids"], batch["attention_mask"]
        assert ids.shape == mask.shape and (mask[:, 1:] <= mask[:, :-1]).all()  # right padding
        inside = (ids == 0) & mask.bool()                                   # 0 pads inputs only, except an attended
        assert not inside.any() or prep.layout.history_width > max(        # empty slot of a wide item
            tokens.shape[1] for tokens in prep.layout.targets.values())
        labels = batch["labels"]
        assert ((labels == IGNORE) | (labels > 0)).all()                    # -100 pads targets, 0 is never one
        assert labels.lt(vocab.size).all()
        used = set(ids[mask.bool()].tolist())
        assert not (used & {vocab.task_token(t) for t in vocab.tasks}) - task_tokens


def test_loss_is_finite_and_trains_the_model(objective):
    prep, config = prepared(objective)
    data, _ = stage_data(registered(objective), prep, config)
    model = build_model(config, prep)
    loss = data.loss(model, data.collate(data.batches(0)[0]))
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert model.get_input_embeddings().weight.grad.abs().sum() > 0


def test_alignment_targets_are_the_other_modalitys_codes():
    prep, config = prepared("translate")
    data, count = stage_data(ALIGNMENTS.get("translate"), prep, config)
    assert count == 2 * (N - 3)                                            # items with an image, both directions
    vocab, tokens = prep.layout.vocab, prep.layout.modality_tokens
    batch = data.collate(np.arange(count))
    for row, labels in zip(batch["input_ids"].tolist(), batch["labels"].tolist(), strict=True):
        task = vocab.tasks[row[0] - vocab.task_token(vocab.tasks[0])]
        source, target = task.split("->")
        item = next(i for i in range(N) if tokens[source][i].tolist() == [t for t in row[1:] if t][:-1])
        assert [t for t in labels if t != IGNORE] == tokens[target][item].tolist()   # ragged: 2 vs 3 codes


def test_item_level_translations_show_one_modality_and_write_the_other():
    """On the item-level causal backbone an item is translated as a one-item history holding only the source
    modality's codes (the rest `<pad>`, attended), followed by the whole item labelled on the target's codes."""
    prep, config = prepared("translate", kind="item-causal")
    data, count = stage_data(ALIGNMENTS.get("translate"), prep, config)
    assert count == 2 * (N - 3)                                            # items with an image, both directions
    layout = prep.layout
    vocab, width, pad = layout.vocab, layout.history_width, layout.vocab.token("<pad>")
    modality = token_modalities(vocab, layout.item_tokens)                 # (N, W)
    batch = data.collate(np.arange(count))
    assert batch["attention_mask"].all() and batch["input_ids"].shape[1] == 1 + 2 * width
    directions = set()
    for ids, labels in zip(batch["input_ids"].numpy(), batch["labels"].numpy(), strict=True):
        assert ids[0] == vocab.token("<bos>") and (labels[:1 + width] == IGNORE).all()
        history, item = ids[1:1 + width], ids[1 + width:]
        index = int(np.flatnonzero((layout.item_tokens == item).all(axis=1))[0])
        shown, written = history != pad, labels[1 + width:] != IGNORE
        source, target = set(modality[index][shown].tolist()), set(modality[index][written].tolist())
        assert len(source) == len(target) == 1 and source != target and -1 not in source | target
        assert (shown == (modality[index] == min(source))).all() and (history[shown] == item[shown]).all()
        assert (written == (modality[index] == min(target))).all()
        assert (labels[1 + width:][written] == item[written]).all()
        directions.add((min(source), min(target)))
    assert directions == {(0, 1), (1, 0)}


def test_item_level_infonce_pairs_one_items_text_view_with_its_image_view():
    """On the item-level causal backbone InfoNCE's two rows of an item are one-item histories holding only its text
    codes and only its image codes (the rest `<pad>`, attended); rows i and i + B are the same item."""
    prep, config = prepared("infonce", kind="item-causal")
    data, count = stage_data(ALIGNMENTS.get("infonce"), prep, config)
    assert count == N - 3                                                  # items with an image
    layout = prep.layout
    vocab, width, pad = layout.vocab, layout.history_width, layout.vocab.token("<pad>")
    modality = token_modalities(vocab, layout.item_tokens)                 # (N, W)
    index = data.batches(0)[0]
    batch = data.collate(index)
    ids = batch["input_ids"].numpy()
    assert batch["attention_mask"].all() and ids.shape == (2 * len(index), 1 + width)
    assert (ids[:, 0] == vocab.token("<bos>")).all()
    for side, rows in enumerate((ids[:len(index)], ids[len(index):])):
        for item, row in zip(index, rows[:, 1:], strict=True):
            shown = row != pad
            assert (shown == (modality[item] == side)).all() and (row[shown] == layout.item_tokens[item][shown]).all()


def test_symmetric_infonce_matches_the_formula_by_hand():
    import math

    from mmgr.objectives.alignment import symmetric_infonce

    states = torch.tensor([[1., 0.], [0., 1.], [1., 1.], [0., 2.]])          # a = rows 0-1, b = rows 2-3
    tau, c = 0.5, 1 / math.sqrt(2)                                          # cos(a0, b0) = c, cos(a0, b1) = 0
    cos = [[c, 0.0], [c, 1.0]]                                              # cos(a_i, b_j)
    def ce(row, j):
        return -math.log(math.exp(row[j] / tau) / sum(math.exp(v / tau) for v in row))
    a_to_b = (ce(cos[0], 0) + ce(cos[1], 1)) / 2
    b_to_a = (ce([cos[0][0], cos[1][0]], 0) + ce([cos[0][1], cos[1][1]], 1)) / 2
    assert symmetric_infonce(states, tau).item() == pytest.approx((a_to_b + b_to_a) / 2, abs=1e-6)
