"""SynGR as released (four sequence tasks on one-modality histories + SynGR's two on bimodal ones) against
hand-computed answers: the wide layout's rows, the examples, and the loss of a batch mixing both kinds of row."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from mmgr.config import ModelConfig, SynGRConfig, load_config
from mmgr.engines.generative import check_backbone
from mmgr.errors import MmgrError
from mmgr.layouts import LAYOUTS
from mmgr.layouts.base import pad_batch
from mmgr.models.item_causal import ItemCausalLM
from mmgr.objectives.syngr import synergy_loss, target_mean
from mmgr.objectives.syngr_released import ReleasedSynGRLoss, ReleasedSynGRObjective, released_examples
from mmgr.tokenizers.codes import ModalityCodes, Vocabulary
from mmgr.training.data import IGNORE

MODEL = ModelConfig(kind="item-causal", d_model=16, num_layers=2, num_heads=2, d_kv=8, d_ff=32, dropout=0.0)


def wide_world():
    """12 items with 2-level text and image SIDs, the `unimodal-wide` layout, three training sequences."""
    grid = np.array([(a, b) for a in range(4) for b in range(4)])
    rng = np.random.default_rng(1)
    codes = {m: ModalityCodes(m, grid[rng.permutation(16)[:12]], [4, 4], np.zeros(12, dtype=bool))
             for m in ("text", "image")}
    kind = LAYOUTS.get("unimodal-wide")
    vocab = Vocabulary({m: [4, 4] for m in codes},
                       kind.tasks(["text", "image"]) + ReleasedSynGRObjective().tasks(["text", "image"]))
    layout = kind.build(codes, vocab, ModelConfig(layout="unimodal-wide", modalities=["text", "image"]), 4)
    prep = SimpleNamespace(layout=layout, user_ids=["u0", "u1", "u2"],
                           split=SimpleNamespace(train=[np.array([1, 2, 3, 4]), np.array([5, 6, 7]),
                                                        np.array([8, 9, 10, 11, 0])]))
    return vocab, layout, prep, codes


def test_a_wide_one_modality_row_reads_as_the_narrow_row():
    """`<pad>` adds nothing to an item's summed embedding: a text history at the bimodal width (image slots
    <pad>) gives the item-level model the same next-SID logits as the same history written two codes wide."""
    vocab, layout, _, codes = wide_world()
    narrow = LAYOUTS.get("unimodal").build(codes, vocab, ModelConfig(layout="unimodal", modalities=["text", "image"]),
                                           4)
    history = np.array([3, 7, 1])
    wide_row = layout.target_input("text", layout.encoder_tokens("u", history))
    narrow_row = narrow.target_input("text", narrow.encoder_tokens("u", history))
    assert len(wide_row) == len(narrow_row) + 3 * 2 and (wide_row == vocab.token("<pad>")).sum() == 6
    models = [ItemCausalLM(MODEL, vocab, seed=0, item_width=width, task_tokens=1, target_width=2).eval()
              for width in (4, 2)]
    states = [model.last_states(*pad_batch([np.concatenate([[vocab.token("<bos>")], row[:-1]])]))
              for model, row in zip(models, (wide_row, narrow_row), strict=True)]
    torch.testing.assert_close(states[0], states[1])


def test_released_examples_are_four_one_modality_tasks_then_two_bimodal_ones():
    vocab, layout, prep, _ = wide_world()
    examples = released_examples(prep, max_history=4)
    assert len(examples.inputs) == 6 * 3                                   # 6 tasks x 3 windows
    pad = vocab.token("<pad>")
    tasks = [vocab.tasks[row[1] - vocab.task_token(vocab.tasks[0])] for row in examples.inputs]
    assert tasks == [t for t in ("seq:text->text", "seq:text->image", "seq:image->text", "seq:image->image",
                                 "next:text", "next:image") for _ in range(3)]
    # user 0 (items 1..4): the image -> text task reads pads then image codes per item, writes the text SIDs
    row, labels = examples.inputs[6], examples.labels[6]
    items = row[2:].reshape(4, 4)
    assert (items[:, :2] == pad).all()
    assert items[:, 2:].tolist() == layout.modality_tokens["image"][[1, 2, 3, 4]].tolist()
    written = labels[2:].reshape(4, 4)
    assert (written[0] == IGNORE).all() and (written[1:, 2:] == IGNORE).all()
    assert written[1:, :2].tolist() == layout.modality_tokens["text"][[2, 3, 4]].tolist()
    assert examples.inputs[12][2:].tolist() == layout.item_tokens[[1, 2, 3, 4]].reshape(-1).tolist()   # bimodal


def mixed_batch():
    vocab, _, prep, _ = wide_world()
    examples = released_examples(prep, max_history=4)
    chosen = [0, 12, 4, 7, 16, 11]                                        # four sequence rows, two SynGR rows
    ids, mask = pad_batch([examples.inputs[i] for i in chosen])
    labels, _ = pad_batch([examples.labels[i] for i in chosen], pad=IGNORE)
    model = ItemCausalLM(MODEL, vocab, seed=0, item_width=4, task_tokens=1, target_width=2).eval()
    return vocab, model, {"input_ids": ids, "attention_mask": mask, "labels": labels}


def summed_ce(model, ids, mask, labels) -> tuple[torch.Tensor, int]:
    out = model(input_ids=ids, attention_mask=mask, labels=labels)
    count = int((labels[:, 1:] >= 0).sum())
    return out.loss * count, count


@pytest.mark.parametrize(("view_loss", "unimodal_view", "masking", "alpha"), [
    ("mean", True, "saliency", 0.3), ("sum", True, "saliency", 0.3), ("mean", False, "saliency", 0.3),
    ("mean", True, "random", 0.3), ("mean", True, "saliency", 0.0)])
def test_loss_reads_sequence_rows_once_and_synergy_rows_in_three_views(view_loss, unimodal_view, masking, alpha):
    vocab, model, batch = mixed_batch()
    cfg = SynGRConfig(mask_ratio=0.5, synergy_weight=alpha, temperature=0.2, view_loss=view_loss,
                      unimodal_view=unimodal_view, masking=masking)
    loss = ReleasedSynGRLoss.for_vocabulary(vocab, cfg)
    torch.manual_seed(5)                                                   # the random masking's draws
    parts = loss.parts(model, batch)
    ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
    plain, syn = torch.tensor([0, 2, 3, 5]), torch.tensor([1, 4])         # SynGR rows between the others
    torch.manual_seed(5)
    hidden, other = loss.hidden_and_other(model, ids[syn], mask[syn], labels[syn])
    assert hidden.any() and other.any()
    views = [ids[syn], ids[syn].masked_fill(hidden, vocab.token("<pad>")), ids[syn].masked_fill(other, 0)]
    plain_sum, plain_count = summed_ce(model, ids[plain], mask[plain], labels[plain])
    sums = [summed_ce(model, view, mask[syn], labels[syn])[0] for view in views]
    syn_count = int((labels[syn][:, 1:] >= 0).sum())
    trained = sums if unimodal_view else sums[:2]
    share = sum(trained) / (len(trained) if view_loss == "mean" else 1)
    ce = (plain_sum + share) / (plain_count + syn_count)
    z = [target_mean(model(input_ids=view, attention_mask=mask[syn], labels=labels[syn],
                           output_hidden_states=True).hidden_states[0][:, :-1], labels[syn][:, 1:]) for view in views]
    synergy = synergy_loss(z[0], z[1], z[2], 0.2)
    assert ("synergy" in parts) == (alpha > 0)
    if alpha:
        assert parts["synergy"].item() == pytest.approx(synergy.item(), abs=1e-5)
    assert parts["loss"].item() == pytest.approx((ce + alpha * synergy).item(), abs=1e-4)
    original = (plain_sum + sums[0]) / (plain_count + syn_count)
    assert parts["ce_original"].item() == pytest.approx(original.item(), abs=1e-5)
    assert parts["ce_masked"].item() == pytest.approx((sums[1] / syn_count).item(), abs=1e-5)
    assert ("ce_unimodal" in parts) == unimodal_view


def test_a_batch_of_sequence_rows_alone_is_their_cross_entropy():
    vocab, model, batch = mixed_batch()
    rows = {key: value[[0, 2, 3, 5]] for key, value in batch.items()}
    parts = ReleasedSynGRLoss.for_vocabulary(vocab, SynGRConfig())(model, rows)
    assert parts.item() == pytest.approx(model(**rows).loss.item(), abs=1e-5)


def test_the_wide_layout_is_refused_on_a_token_level_backbone():
    config = load_config(overrides=["model.kind=t5", "model.layout=unimodal-wide", "model.modalities=[text,image]",
                                    "training.objective=mql4grec"])
    with pytest.raises(MmgrError, match="does not read model.layout=unimodal-wide"):
        check_backbone(config)


def test_mql4grec_and_syngr_refuse_the_wide_layout():
    """Their examples are written for the unimodal and the bimodal layouts' widths: on the wide one they would
    misalign, so they are refused by name."""
    from mmgr.config import MultitaskConfig
    from mmgr.objectives.base import Batching
    from mmgr.objectives.multitask import MultitaskObjective
    from mmgr.objectives.syngr import SynGRObjective

    _, _, prep, _ = wide_world()
    batching = Batching(batch_size=4, seed=0, max_history=4, decoder_only=True)
    with pytest.raises(MmgrError, match="model.layout=unimodal"):
        MultitaskObjective().train_data(prep, batching, MultitaskConfig())
    with pytest.raises(MmgrError, match="model.layout=bimodal"):
        SynGRObjective().train_data(prep, batching, SynGRConfig())
