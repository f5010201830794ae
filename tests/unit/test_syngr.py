"""SynGR's parts against hand-computed answers: saliency, masking, the three views, the loss, list fusion."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from mmgr.config import DecodingConfig, ModelConfig, SynGRConfig
from mmgr.decoding.fusion import fuse
from mmgr.evaluation.protocol import rank_items
from mmgr.layouts import LAYOUTS
from mmgr.layouts.base import pad_batch, token_modalities
from mmgr.models.item_causal import ItemCausalLM
from mmgr.models.saliency import dominant_modality, random_mask, token_importance, top_r_mask
from mmgr.models.seq2seq import build_t5
from mmgr.objectives.syngr import (
    ItemLevelSynGRLoss,
    SynGRLoss,
    item_level_examples,
    synergy_loss,
    target_mean,
    unimodal_view,
)
from mmgr.tokenizers.codes import ModalityCodes, Vocabulary
from mmgr.training.data import IGNORE

T, V, P = 0, 1, -1          # token kinds: text code, image code, prompt/special/padding


class FixedAttention(nn.Module):
    """An 'encoder' whose last layer's attention is given (B, H, T, T)."""

    def __init__(self, attention: torch.Tensor) -> None:
        super().__init__()
        self.attention = attention

    def get_encoder(self):
        return lambda **_: type("Out", (), {"attentions": (torch.zeros(1), self.attention)})()


def test_importance_is_attention_received_averaged_over_heads_and_real_queries():
    # one sequence of 3 real tokens + 1 padding; 2 heads; rows = queries, columns = keys
    head0 = torch.tensor([[.5, .3, .2, 0], [.1, .8, .1, 0], [.2, .2, .6, 0], [.9, .1, 0, 0]])
    head1 = torch.tensor([[.1, .1, .8, 0], [.3, .3, .4, 0], [.6, .2, .2, 0], [.0, .0, 1., 0]])
    model = FixedAttention(torch.stack([head0, head1])[None])
    importance = token_importance(model, torch.tensor([[5, 6, 7, 0]]), torch.tensor([[1, 1, 1, 0]]))
    # key 0: heads mean per query = (.3, .2, .4) -> mean over the 3 real queries = .3; the padded query is ignored
    expected = [(.3 + .2 + .4) / 3, (.2 + .55 + .2) / 3, (.5 + .25 + .4) / 3, 0.0]
    np.testing.assert_allclose(importance[0].numpy(), expected, atol=1e-6)


def test_importance_of_a_real_t5_matches_its_attention_and_keeps_train_mode():
    vocab = Vocabulary({"text": [4, 4], "image": [4, 4]})
    model = build_t5(ModelConfig(d_model=16, num_layers=2, num_decoder_layers=1, num_heads=2, d_kv=8, d_ff=32),
                     vocab, seed=0).train()
    ids, mask = pad_batch([np.array([9, 10, 13, 14, 2]), np.array([11, 15, 2])])
    importance = token_importance(model, ids, mask)
    assert model.training                                                    # the caller's mode is restored
    model.eval()
    attention = model.get_encoder()(input_ids=ids, attention_mask=mask, output_attentions=True).attentions[-1]
    for row in range(2):
        real = int(mask[row].sum())
        by_hand = attention[row, :, :real, :].mean(0).mean(0)               # heads, then real queries
        np.testing.assert_allclose(importance[row, :real].numpy(), by_hand[:real].detach().numpy(), atol=1e-6)
        assert (importance[row, real:] == 0).all()
    np.testing.assert_allclose(importance.sum(1).numpy(), [1, 1], atol=1e-5)  # softmax rows sum to 1


def kinds_and_importance():
    #            prompt  t     t     t     v     v     v     v    eos   pad
    kinds = torch.tensor([[P, T, T, T, V, V, V, V, P, P],
                          [P, T, T, T, T, V, V, V, P, P]])
    importance = torch.tensor([[.9, .05, .10, .02, .20, .01, .30, .15, .8, 0.],
                               [.9, .40, .30, .20, .10, .01, .02, .03, .8, 0.]])
    return kinds, importance


def test_dominant_modality_has_the_higher_mean_importance():
    kinds, importance = kinds_and_importance()
    # row 0: text mean .057, image mean .165 -> image; row 1: text .25, image .02 -> text (prompts never count)
    assert dominant_modality(importance, kinds, 2).tolist() == [V, T]


def test_top_r_masking_hides_the_dominant_modalitys_most_important_tokens():
    kinds, importance = kinds_and_importance()
    mask = top_r_mask(importance, kinds, dominant_modality(importance, kinds, 2), ratio=0.5)
    # row 0: image dominant, 4 tokens -> 2 masked: the .30 and .20 ones; row 1: text dominant, 4 -> .40 and .30
    assert mask[0].nonzero().flatten().tolist() == [4, 6]
    assert mask[1].nonzero().flatten().tolist() == [1, 2]
    assert not mask[kinds == P].any()                                       # never a prompt, special or pad
    counts = [top_r_mask(importance, kinds, torch.tensor([V, T]), r).sum(1).tolist() for r in (0.0, 0.3, 1.0)]
    assert counts == [[0, 0], [1, 1], [4, 4]]                               # round half up: 0.3 x 4 = 1.2 -> 1


def test_random_masking_takes_the_same_count_from_one_modality():
    kinds, _ = kinds_and_importance()
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        mask = random_mask(kinds, 2, 0.5, generator)
        assert mask.sum(1).tolist() == [2, 2] and not mask[kinds == P].any()
        for row in range(2):
            assert len(set(kinds[row][mask[row]].tolist())) == 1             # one modality per sequence


def test_unimodal_view_keeps_the_tasks_modality_and_the_prompts_in_order():
    kinds, _ = kinds_and_importance()
    ids = torch.arange(1, 11).repeat(2, 1)
    mask = (kinds != P).long()
    mask[:, [0, 8]] = 1                                                     # prompt and eos are real tokens
    view, view_mask = unimodal_view(ids, mask, kinds, torch.tensor([T, V]))
    assert view[0][view_mask[0].bool()].tolist() == [1, 2, 3, 4, 9]         # prompt, 3 text codes, eos
    assert view[1][view_mask[1].bool()].tolist() == [1, 6, 7, 8, 9]         # prompt, 3 image codes, eos
    assert view.shape == (2, 5) and ((view != 0) == view_mask.bool()).all()


def test_synergy_loss_matches_the_two_way_infonce_by_hand():
    z_ori, z_mask, z_uni = torch.tensor([[1., 0.]]), torch.tensor([[1., 1.]]), torch.tensor([[0., 1.]])
    tau = 0.5                                                                # both cosines are 1/sqrt(2):
    assert synergy_loss(z_ori, z_mask, z_uni, tau).item() == pytest.approx(math.log(2), abs=1e-6)
    z_uni = torch.tensor([[1., -1.]])                                        # cos = 0 with the masked view
    pos, neg = 1 / math.sqrt(2) / tau, 0.0
    expected = -math.log(math.exp(pos) / (math.exp(pos) + math.exp(neg)))
    assert synergy_loss(z_ori, z_mask, z_uni, tau).item() == pytest.approx(expected, abs=1e-6)


def bimodal_batch():
    rng = np.random.default_rng(0)
    grid = np.array([(a, b) for a in range(4) for b in range(4)])
    codes = {m: ModalityCodes(m, grid[rng.permutation(16)[:12]], [4, 4], np.zeros(12, dtype=bool))
             for m in ("text", "image")}
    kind = LAYOUTS.get("bimodal")
    vocab = Vocabulary({m: [4, 4] for m in codes}, kind.tasks(["text", "image"]))
    layout = kind.build(codes, vocab, ModelConfig(layout="bimodal", modalities=["text", "image"]), 4)
    rows, labels = [], []
    for user, (history, target) in enumerate([([1, 2, 3], 4), ([5, 6], 7), ([8, 9, 10, 11], 0)]):
        name = "text" if user % 2 == 0 else "image"
        rows.append(layout.target_input(name, layout.encoder_tokens(f"u{user}", np.array(history))))
        labels.append(layout.targets[name][target])
    ids, mask = pad_batch(rows)
    return vocab, {"input_ids": ids, "attention_mask": mask, "labels": torch.from_numpy(np.stack(labels))}


@pytest.mark.parametrize(("view_loss", "masked_tokens"), [("mean", "drop"), ("sum", "mask-token")])
def test_syngr_loss_combines_three_view_cross_entropies_and_the_weighted_synergy_term(view_loss, masked_tokens):
    """The authors' code: the mean of the views' CEs, masked tokens dropped (padding, mask 0); the options: the sum,
    an attended <mask>."""
    vocab, batch = bimodal_batch()
    model = build_t5(ModelConfig(d_model=16, num_layers=2, num_decoder_layers=1, num_heads=2, d_kv=8, d_ff=32,
                                 dropout=0.0), vocab, seed=0)
    cfg = SynGRConfig(mask_ratio=0.5, synergy_weight=0.3, temperature=0.2, view_loss=view_loss,
                      masked_tokens=masked_tokens)
    loss = SynGRLoss.for_vocabulary(vocab, cfg)
    parts = loss.parts(model, batch)
    # by hand: build each view, run the model on it alone, and combine
    ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
    kinds = loss.token_kinds[ids].masked_fill(mask == 0, -1)
    importance = token_importance(model, ids, mask)
    hidden = top_r_mask(importance, kinds, dominant_modality(importance, kinds, 2), 0.5)
    assert hidden.any() and (kinds[hidden] >= 0).all()
    if masked_tokens == "drop":
        masked = (ids.masked_fill(hidden, vocab.token("<pad>")), mask.masked_fill(hidden, 0))
    else:
        masked = (ids.masked_fill(hidden, vocab.token("<mask>")), mask)
    uni = unimodal_view(ids, mask, kinds, loss.task_kinds[ids[:, 0]])
    outs = [model(input_ids=i, attention_mask=m, labels=labels, output_hidden_states=True)
            for i, m in ((ids, mask), masked, uni)]
    for name, out in zip(("ce_original", "ce_masked", "ce_unimodal"), outs, strict=True):
        assert parts[name].item() == pytest.approx(out.loss.item(), abs=1e-5)
    z = [out.decoder_hidden_states[-1].mean(dim=1) for out in outs]          # every label is a real token here
    synergy = synergy_loss(z[0], z[1], z[2], 0.2)
    assert parts["synergy"].item() == pytest.approx(synergy.item(), abs=1e-5)
    views = sum(out.loss for out in outs) / (3 if view_loss == "mean" else 1)
    total = views + 0.3 * synergy
    assert parts["loss"].item() == pytest.approx(total.item(), abs=1e-4)


@pytest.mark.parametrize(("settings", "terms"), [
    ({}, {"ce_original", "ce_masked", "ce_unimodal", "synergy"}),
    ({"unimodal_view": False}, {"ce_original", "ce_masked", "synergy"}),              # w/o UN
    ({"synergy_weight": 0.0}, {"ce_original", "ce_masked", "ce_unimodal"}),            # w/o SCL
    ({"masking": "random"}, {"ce_original", "ce_masked", "ce_unimodal", "synergy"}),   # w/o SM
])
def test_ablation_switches_remove_their_term(settings, terms):
    vocab, batch = bimodal_batch()
    model = build_t5(ModelConfig(d_model=16, num_layers=1, num_decoder_layers=1, num_heads=2, d_kv=8, d_ff=32),
                     vocab, seed=0)
    parts = SynGRLoss.for_vocabulary(vocab, SynGRConfig(**settings)).parts(model, batch)
    assert set(parts) - {"loss"} == terms
    parts["loss"].backward()
    assert model.get_encoder().embed_tokens.weight.grad.abs().sum() > 0


def lists(*rows):
    items = np.array([[i for i, _ in row] for row in rows])
    scores = np.array([[s for _, s in row] for row in rows], dtype=np.float32)
    return items, scores


def test_mean_bonus_fusion_on_hand_made_lists():
    text = lists([(1, -1.0), (2, -2.0), (3, -3.0)])
    image = lists([(3, -0.5), (4, -1.5), (-1, -np.inf)])                      # a short list (padding)
    items, scores = fuse([text, image], "mean-bonus", top_k=4, bonus=1.0)
    # item 3 in both: mean(-3, -0.5) + 1 = -0.75; 1: -1; 4: -1.5; 2: -2
    assert items.tolist() == [[3, 1, 4, 2]]
    np.testing.assert_allclose(scores, [[-0.75, -1.0, -1.5, -2.0]])
    items, _ = fuse([text, image], "mean-bonus", top_k=2, bonus=0.0)
    assert items.tolist() == [[1, 4]]                                         # -1.75 for item 3 without a bonus


def test_rrf_and_max_fusion_on_hand_made_lists():
    text = lists([(1, -1.0), (2, -2.0)], [(5, -1.0), (6, -1.1)])
    image = lists([(2, -0.1), (3, -0.2)], [(7, -3.0), (-1, -np.inf)])
    items, scores = fuse([text, image], "rrf", top_k=3)
    assert items[0].tolist() == [2, 1, 3]                                     # 2: 1/62 + 1/61 beats 1: 1/61
    assert scores[0, 0] == pytest.approx(1 / 62 + 1 / 61)
    assert items[1].tolist() == [5, 7, 6]                                     # tie 5 / 7 (1/61): first list first
    items, scores = fuse([text, image], "max", top_k=3)
    assert items[0].tolist() == [2, 3, 1] and scores[0, 0] == pytest.approx(-0.1)
    assert items[1].tolist() == [5, 6, 7]


def test_fusion_pads_rows_that_find_fewer_items():
    one = lists([(1, -1.0), (-1, -np.inf)])
    items, scores = fuse([one, one], "mean-bonus", top_k=3, bonus=0.5)
    assert items.tolist() == [[1, -1, -1]] and scores[0, 0] == pytest.approx(-0.5) and np.isinf(scores[0, 1:]).all()


def test_fused_lists_score_log_probability_per_generated_token():
    """Each modality's summed SID log-probability is divided by (SID length + 1 for the end token) before fusing, the
    scale of the Hugging Face beam scores SynGR's authors fuse, so the bonus weighs the same as theirs."""
    class Layout:
        vocab = None
        targets = {"text": None, "image": None}

        def encoder_tokens(self, user, history):
            return np.asarray(history, dtype=np.int64)

        def target_input(self, target, row):
            return row

    summed = {"text": ([1, 2, -1], [-4.0, -8.0, -math.inf]),                     # per trie: items, summed log-probs
              "image": ([2, 3, -1], [-2.0, -3.0, -math.inf])}

    def search(model, input_ids, mask, trie, beam_size, top_k):
        items, scores = summed[trie.name]
        return torch.tensor([items]), torch.tensor([scores])

    tries = {name: type("Trie", (), {"depth": 3, "name": name})() for name in summed}
    cfg = DecodingConfig(beam_size=3, top_k=3, fusion="mean-bonus", fusion_bonus=1.0)
    items, scores = rank_items(nn.Linear(1, 1), Layout(), ["u"], [np.array([7])], tries, cfg, search=search)
    # per token (/4): text 1: -1, 2: -2; image 2: -0.5, 3: -0.75. Item 2 in both: mean(-2, -0.5) + 1 = -0.25
    assert items.tolist() == [[2, 3, 1]]
    np.testing.assert_allclose(scores, [[-0.25, -0.75, -1.0]])


def test_pid_estimate_splits_the_bimodal_hits_by_the_unimodal_ones():
    from mmgr.evaluation.synergy import pid_estimate

    bimodal = [1, 1, 1, 1, 0, 0, 1, 0]
    text = [1, 1, 0, 0, 1, 0, 0, 0]
    image = [1, 0, 1, 0, 0, 0, 0, 1]
    out = pid_estimate(np.array(bimodal), np.array(text), np.array(image))
    assert out["bimodal_hits"] == 5 and out["lost"] == 2                     # users 4 and 7: a unimodal model only
    assert out["share_of_bimodal_hits"] == {"redundant": .2, "unique_text": .2, "unique_image": .2, "synergy": .4}
    assert out["needs_both"] == pytest.approx(.4) and out["share_of_users"]["synergy"] == pytest.approx(2 / 8)


def code_kinds(vocab: Vocabulary) -> torch.Tensor:
    return torch.from_numpy(token_modalities(vocab, np.arange(vocab.size)))


def test_saliency_shares_split_each_rows_attention_over_modalities_on_an_encoder_decoder():
    """On T5 the importance is the attention each token receives; a row's share of a modality is its mean
    importance per code token of that modality over the modalities' sum."""
    from mmgr.evaluation.synergy import saliency_shares

    vocab, batch = bimodal_batch()
    model = build_t5(ModelConfig(d_model=16, num_layers=1, num_decoder_layers=1, num_heads=2, d_kv=8, d_ff=32),
                     vocab, seed=0)
    halves = [{k: v[:2] for k, v in batch.items()}, {k: v[2:] for k, v in batch.items()}]
    shares = saliency_shares(model, halves, code_kinds(vocab), ["text", "image"])
    np.testing.assert_allclose(shares["text"] + shares["image"], 1.0, atol=1e-6)
    ids, mask = batch["input_ids"][1:2], batch["attention_mask"][1:2]
    importance = token_importance(model, ids, mask)[0].numpy()
    kinds = token_modalities(vocab, ids[0]).numpy()
    text, image = importance[kinds == T].mean(), importance[kinds == V].mean()
    assert len(shares["text"]) == 3 and shares["text"][1] == pytest.approx(text / (text + image), abs=1e-6)


def test_saliency_shares_on_the_item_level_backbone_are_gradient_x_input_of_the_rows_own_labels():
    """The item-level backbone's importance is its gradient x input for the row's labels; a row without one
    modality's codes is left out, also inside a batch of rows that have both."""
    from mmgr.evaluation.synergy import saliency_shares

    vocab, _, model, batch = item_level_world()
    kinds = token_modalities(vocab, batch["input_ids"])
    ids = batch["input_ids"].clone()
    ids[1] = ids[1].masked_fill(kinds[1] == V, vocab.token("<pad>"))        # row 1: text codes only
    mixed = {**batch, "input_ids": ids}
    shares = saliency_shares(model, [mixed], code_kinds(vocab), ["text", "image"])
    rows = [0, 2, 3, 4, 5]
    importance = model.input_saliency(ids[rows], batch["attention_mask"][rows], batch["labels"][rows]).numpy()
    kept = kinds[rows].numpy()
    text = np.array([row[k == T].mean() for row, k in zip(importance, kept, strict=True)])
    image = np.array([row[k == V].mean() for row, k in zip(importance, kept, strict=True)])
    np.testing.assert_allclose(shares["text"], text / (text + image), rtol=1e-5)


def test_image_codes_without_embeddings_carry_no_importance_on_the_item_level_backbone():
    """Image codes whose embeddings are zero add nothing to an item: every row's importance is on its text codes."""
    from mmgr.evaluation.synergy import saliency_shares
    from mmgr.models.saliency import importance_measure

    vocab, _, model, batch = item_level_world()
    with torch.no_grad():
        model.body.embed_tokens.weight[code_kinds(vocab) == V] = 0.0
    shares = saliency_shares(model, [batch], code_kinds(vocab), ["text", "image"])
    assert importance_measure(model) == "gradient x input" and len(shares["text"]) == len(batch["input_ids"])
    np.testing.assert_allclose(shares["text"], 1.0)
    np.testing.assert_allclose(shares["image"], 0.0)


def test_a_summary_of_shares_gives_means_leads_quantiles_and_a_histogram():
    from mmgr.evaluation.synergy import summarize_shares

    text = np.array([0.15, 0.62, 0.74, 0.95])
    out = summarize_shares({"text": text, "image": 1 - text}, "gradient x input")
    assert out["rows"] == 4 and out["mean"]["text"] == pytest.approx(0.615)
    assert out["leads"] == {"text": 0.75, "image": 0.25}
    assert out["quantiles"]["text"]["0.5"] == pytest.approx(0.68)
    assert out["histogram"]["text"] == [0, 1, 0, 0, 0, 0, 1, 1, 0, 1]


def item_level_world(masked_tokens: str = "drop"):
    """A bimodal batch as the item-level backbone's windows (`<bos> <task> t v ... t v`, labels one modality wide in
    the first slots of every item after the first) and a small item-causal model."""
    vocab, _ = bimodal_batch()
    grid = np.array([(a, b) for a in range(4) for b in range(4)])
    rng = np.random.default_rng(1)
    codes = {m: ModalityCodes(m, grid[rng.permutation(16)[:12]], [4, 4], np.zeros(12, dtype=bool))
             for m in ("text", "image")}
    layout = LAYOUTS.get("bimodal").build(codes, vocab, ModelConfig(layout="bimodal", modalities=["text", "image"]),
                                          4)
    prep = SimpleNamespace(layout=layout, user_ids=["u0", "u1", "u2"],
                           split=SimpleNamespace(train=[np.array([1, 2, 3, 4]), np.array([5, 6, 7]),
                                                        np.array([8, 9, 10, 11, 0])]))
    examples = item_level_examples(prep, max_history=4)
    ids, mask = pad_batch(examples.inputs)
    labels, _ = pad_batch(examples.labels, pad=IGNORE)
    model = ItemCausalLM(ModelConfig(kind="item-causal", d_model=16, num_layers=2, num_heads=2, d_kv=8, d_ff=32,
                                     dropout=0.0), vocab, seed=0, item_width=4, task_tokens=1, target_width=2).eval()
    return vocab, layout, model, {"input_ids": ids, "attention_mask": mask, "labels": labels}


def test_item_level_examples_write_one_modality_after_each_bimodal_item():
    vocab, layout, _, batch = item_level_world()
    ids, labels = batch["input_ids"], batch["labels"]
    assert len(ids) == 6                                                    # 3 windows x 2 tasks
    text, image = vocab.task_token("next:text"), vocab.task_token("next:image")
    assert ids[:, 0].eq(vocab.token("<bos>")).all() and ids[:3, 1].eq(text).all() and ids[3:, 1].eq(image).all()
    # user 0, image task: items 1..4 read whole; items 2..4 labelled with their image SID in slots 0-1 of 4
    assert ids[3, 2:18].tolist() == layout.item_tokens[[1, 2, 3, 4]].reshape(-1).tolist()
    written = labels[3, 2:18].view(4, 4)
    assert (written[0] == IGNORE).all() and (written[1:, 2:] == IGNORE).all()
    assert written[1:, :2].tolist() == layout.targets["image"][[2, 3, 4]].tolist()


def test_item_level_saliency_is_gradient_times_input_by_finite_differences():
    _, _, model, batch = item_level_world()
    ids, mask, labels = batch["input_ids"][:2], batch["attention_mask"][:2], batch["labels"][:2]
    importance = model.input_saliency(ids, mask, labels)
    base = model.body.embed_tokens(ids).detach()

    def loss(embedded):
        logits, targets = model.written_logits(model.target_states(ids, mask, labels, embedded), labels)
        return torch.nn.functional.cross_entropy(logits, targets, reduction="sum").item()

    eps = 1e-2
    for row, col in [(0, 2), (0, 5), (0, 9), (1, 3), (1, 8)]:              # text and image codes of several items
        up, down = base.clone(), base.clone()
        up[row, col] *= 1 + eps
        down[row, col] *= 1 - eps
        assert importance[row, col].item() == pytest.approx(abs(loss(up) - loss(down)) / (2 * eps), rel=2e-2, abs=1e-4)
    assert (importance[mask == 0] == 0).all()


@pytest.mark.parametrize("masked_tokens", ["drop", "mask-token"])
def test_item_level_syngr_loss_is_three_views_through_the_plain_model_and_the_synergy_term(masked_tokens):
    vocab, _, model, batch = item_level_world()
    cfg = SynGRConfig(mask_ratio=0.5, synergy_weight=0.3, temperature=0.2, masked_tokens=masked_tokens)
    loss = ItemLevelSynGRLoss.for_vocabulary(vocab, cfg)
    parts = loss.parts(model, batch)
    # by hand: each view through the model's own forward and loss
    ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
    kinds = loss.token_kinds[ids].masked_fill(mask == 0, -1)
    importance = model.input_saliency(ids, mask, labels)
    hidden = top_r_mask(importance, kinds, dominant_modality(importance, kinds, 2), 0.5)
    assert hidden.any() and (kinds[hidden] >= 0).all()
    assert not model.body.embed_tokens.weight[vocab.token("<pad>")].any()     # a dropped token adds nothing
    fill = vocab.token("<pad>" if masked_tokens == "drop" else "<mask>")
    other = (kinds >= 0) & (kinds != loss.task_kinds[ids[:, 1]][:, None])
    views = [ids, ids.masked_fill(hidden, fill), ids.masked_fill(other, vocab.token("<pad>"))]
    outs = [model(input_ids=v, attention_mask=mask, labels=labels, output_hidden_states=True) for v in views]
    for name, out in zip(("ce_original", "ce_masked", "ce_unimodal"), outs, strict=True):
        assert parts[name].item() == pytest.approx(out.loss.item(), abs=1e-5)
    z = [target_mean(out.hidden_states[0][:, :-1], labels[:, 1:]) for out in outs]
    synergy = synergy_loss(z[0], z[1], z[2], 0.2)
    assert parts["synergy"].item() == pytest.approx(synergy.item(), abs=1e-5)
    assert parts["loss"].item() == pytest.approx((sum(o.loss for o in outs) / 3 + 0.3 * synergy).item(), abs=1e-4)


def test_item_level_loss_runs_its_views_through_forward_and_so_in_the_trainings_precision():
    """Through Fabric's wrapper the three views run as forward (bf16 autocast here); the saliency pass in full
    precision."""
    from lightning.fabric import Fabric

    vocab, _, model, batch = item_level_world()
    wrapped = Fabric(accelerator="cpu", devices=1, precision="bf16-mixed").setup_module(model)
    seen = []
    model.head_mlp.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    ItemLevelSynGRLoss.for_vocabulary(vocab, SynGRConfig())(wrapped, batch)
    assert seen == [torch.float32, torch.bfloat16]                 # saliency, then the stacked views
