"""The item-level causal backbone: causal at the token level (no position sees a later token, a partial last item
included), its loss is teacher-forced cross-entropy, and its head-only beam search agrees with the no-cache reference
that re-runs the whole model for every prefix, for either padding side, with and without user tokens."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from mmgr.config import ModelConfig
from mmgr.decoding import PrefixTrie
from mmgr.decoding.causal import causal_beam_search, left_align, reference_causal_beam_search
from mmgr.errors import MmgrError
from mmgr.models.item_causal import ItemCausalLM, ItemStep
from mmgr.tokenizers.codes import Vocabulary

pytestmark = pytest.mark.usefixtures("one_thread")

LEVELS = [6, 6, 5]
SIZES = {"kind": "item-causal", "d_model": 32, "num_layers": 2, "num_heads": 4, "d_kv": 8, "d_ff": 64,
         "dropout": 0.0}


def vocabulary(user_buckets: int) -> Vocabulary:
    return Vocabulary({"text": LEVELS}, (), user_buckets)


def catalog(vocab: Vocabulary, n: int = 40, modality: str = "text", seed: int = 0) -> torch.Tensor:
    """n distinct items as code-token tuples of `modality` (n, 3)."""
    g = torch.Generator().manual_seed(seed)
    sizes = vocab.levels[modality]
    codes = torch.stack([torch.randint(0, s, (3 * n,), generator=g) for s in sizes], dim=1)
    codes = codes[torch.randperm(3 * n, generator=g)]
    first = torch.unique(codes, dim=0, return_inverse=True)[1]
    keep = [i for i in range(3 * n) if first[i] not in first[:i]][:n]           # distinct, in random order
    return codes[keep] + torch.tensor(vocab.offsets(modality))


def histories(vocab: Vocabulary, items: torch.Tensor, left: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """<bos> [user] + 1 to 5 whole items per row, padded with 0 on the right (or left)."""
    g = torch.Generator().manual_seed(2)
    head = [vocab.token("<bos>"), *([vocab.user_token(f"u{i}") for i in range(1)] if vocab.user_buckets else [])]
    rows = [torch.cat([torch.tensor(head), items[torch.randint(0, len(items), (k,), generator=g)].flatten()])
            for k in (5, 1, 3, 4, 2)]
    width = max(len(r) for r in rows)
    ids, mask = torch.zeros(len(rows), width, dtype=torch.int64), torch.zeros(len(rows), width, dtype=torch.int64)
    for i, row in enumerate(rows):
        span = slice(width - len(row), width) if left else slice(0, len(row))
        ids[i, span], mask[i, span] = row, 1
    return ids, mask


@pytest.fixture(scope="module", params=[0, 4], ids=["no-user", "user-token"])
def world(request):
    vocab = vocabulary(request.param)
    model = ItemCausalLM(ModelConfig(**SIZES), vocab, seed=0, item_width=len(LEVELS)).eval()
    items = catalog(vocab)
    return model, vocab, items, PrefixTrie.build(items, vocab_size=vocab.size)


@pytest.mark.parametrize("limit", [512, 8], ids=["one-pack", "several-packs"])
def test_packed_rows_give_each_rows_padded_state_after_its_last_item(world, limit, monkeypatch):
    """Decoding packs the rows' real positions into sequences (no padding computed): each row's state after its
    last whole item is the padded forward's, for rows of 0 to 5 items and a trailing partial item, in one packed
    sequence or several."""
    import mmgr.models.item_causal as item_causal

    monkeypatch.setattr(item_causal, "PACKED_POSITIONS", limit)
    model, vocab, items, _ = world
    ids, mask = histories(vocab, items)
    ids, mask = torch.cat([ids, ids[:1]]), torch.cat([mask, mask[:1]])
    mask[-1, model.head_tokens:] = 0                                          # a row of no items
    mask[0, -1] = 0                                                           # its last item cut short
    ids = ids * mask
    with torch.no_grad():
        states, counts = model.item_states(ids, mask)
        padded = states[torch.arange(len(ids)), model.head_tokens - 1 + counts]
        packed = model.last_states(ids, mask)
    assert counts.tolist()[0] == 4 and counts.tolist()[-1] == 0
    torch.testing.assert_close(packed, padded, atol=1e-5, rtol=1e-5)


def test_packs_are_consecutive_ranges_within_the_limit():
    from mmgr.models.item_causal import packs

    assert packs([3, 3, 3, 3], 6) == [(0, 2), (2, 4)] and packs([7, 1, 1], 6) == [(0, 1), (1, 3)]
    assert packs([2], 6) == [(0, 1)] and packs([], 6) == []


def test_no_position_sees_a_later_token(world):
    model, vocab, items, _ = world
    ids, _ = histories(vocab, items)
    row = ids[0]                                                  # 5 whole items
    with torch.no_grad():
        full = model(input_ids=row[None]).logits[0]
        for cut in range(1, len(row)):                            # partial last items included
            prefix = model(input_ids=row[None, :cut]).logits[0]
            torch.testing.assert_close(prefix, full[:cut], atol=1e-5, rtol=1e-5)


def test_loss_is_the_teacher_forced_cross_entropy_of_the_labels(world):
    model, vocab, items, _ = world
    ids, mask = histories(vocab, items)
    labels = ids.masked_fill(mask == 0, -100)
    labels[:, :model.head_tokens + 3] = -100                      # context: head tokens and the first item
    out = model(input_ids=ids, attention_mask=mask, labels=labels)
    expected = F.cross_entropy(out.logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(), ignore_index=-100)
    torch.testing.assert_close(out.loss, expected)
    left, left_mask = left_align(ids, mask)
    shifted = model(input_ids=left, attention_mask=left_mask).logits
    torch.testing.assert_close(shifted[left_mask.bool()], out.logits[mask.bool()], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("left", [False, True], ids=["right-padded", "left-padded"])
def test_head_only_search_matches_the_no_cache_reference(world, left):
    model, vocab, items, trie = world
    ids, mask = histories(vocab, items, left=left)
    assert isinstance(model.beam_step(ids, mask), ItemStep)
    found, scores = causal_beam_search(model, ids, mask, trie, beam_size=8, top_k=5)
    ref_found, ref_scores = reference_causal_beam_search(model, ids, mask, trie, beam_size=8, top_k=5)
    assert torch.equal(found, ref_found) and (found >= 0).all()
    torch.testing.assert_close(scores, ref_scores, atol=1e-4, rtol=1e-4)


def test_a_beam_width_per_row_gives_each_row_its_search_alone(world):
    model, vocab, items, trie = world
    ids, mask = histories(vocab, items, left=True)
    widths = torch.tensor([3, 8, 1, 5, 2])
    found, scores = causal_beam_search(model, ids, mask, trie, beam_size=8, top_k=3, row_beams=widths)
    for row, width in enumerate(widths.tolist()):
        alone, alone_scores = causal_beam_search(model, ids[row:row + 1], mask[row:row + 1], trie, beam_size=width,
                                                 top_k=min(width, 3))
        assert torch.equal(found[row, :alone.shape[1]], alone[0])
        torch.testing.assert_close(scores[row, :alone.shape[1]], alone_scores[0], atol=1e-4, rtol=1e-4)


def cross_modal_world() -> tuple[ItemCausalLM, Vocabulary, torch.Tensor, torch.Tensor]:
    """A model with a task token before the history; the items' text and image code tuples (40, 3) each."""
    vocab = Vocabulary({"text": LEVELS, "image": [5, 5, 6]}, ("seq:text->image",), 0)
    model = ItemCausalLM(ModelConfig(**SIZES), vocab, seed=0, item_width=3, task_tokens=1).eval()
    return model, vocab, catalog(vocab), catalog(vocab, modality="image", seed=1)


def test_labels_in_another_modality_are_written_from_the_history_before_each_slot():
    """Hand-computed: input <bos> <task> t(a) t(b) t(c), labels v(b) v(c); each label code's loss is the head's
    cross-entropy from the state before its slot, its level, and the label codes before it (not the input's)."""
    model, vocab, text, image = cross_modal_world()
    head = torch.tensor([vocab.token("<bos>"), vocab.task_token("seq:text->image")])
    ids = torch.cat([head, text[[3, 7, 11]].flatten()])[None]
    labels = torch.cat([torch.full((5,), -100), image[[7, 11]].flatten()])[None]
    loss = model(input_ids=ids, labels=labels).loss
    states, _ = model.item_states(ids, torch.ones_like(ids))                    # (1, 2 + 3, D)
    terms = []
    for slot, item in ((1, 7), (2, 11)):
        chosen = torch.zeros(states.shape[-1])
        for level in range(3):
            logits = model.head(states[0, model.head_tokens - 1 + slot], level, chosen)
            terms.append(-F.log_softmax(logits, dim=-1)[image[item, level]])
            chosen = chosen + model.body.embed_tokens.weight[image[item, level]]
    torch.testing.assert_close(loss, torch.stack(terms).mean(), atol=1e-5, rtol=1e-5)


def test_search_after_a_task_token_matches_the_no_cache_reference():
    model, vocab, text, image = cross_modal_world()
    head = [vocab.token("<bos>"), vocab.task_token("seq:text->image")]
    rows = [torch.cat([torch.tensor(head), text[list(range(k, 2 * k))].flatten()]) for k in (1, 4, 2)]
    ids = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True)
    mask = (torch.arange(ids.shape[1])[None] < torch.tensor([len(r) for r in rows])[:, None]).long()
    trie = PrefixTrie.build(image, vocab_size=vocab.size)
    found, scores = causal_beam_search(model, ids, mask, trie, beam_size=8, top_k=5)
    ref_found, ref_scores = reference_causal_beam_search(model, ids, mask, trie, beam_size=8, top_k=5)
    assert torch.equal(found, ref_found)
    torch.testing.assert_close(scores, ref_scores, atol=1e-4, rtol=1e-4)


def test_hidden_dropout_acts_in_training_only():
    vocab = vocabulary(0)
    model = ItemCausalLM(ModelConfig(**SIZES, hidden_dropout=0.3), vocab, seed=0, item_width=len(LEVELS))
    ids, mask = histories(vocab, catalog(vocab))
    with torch.no_grad():
        assert not torch.equal(model.train()(ids, mask).logits, model(ids, mask).logits)
        assert torch.equal(model.eval()(ids, mask).logits, model(ids, mask).logits)


@pytest.mark.parametrize("switch_tokens", [True, False])
def test_the_model_is_told_the_layouts_item_width(switch_tokens):
    from mmgr.inference.generative import build_model
    from mmgr.layouts.base import LAYOUTS
    from tests.helpers import prepared

    prep, config = prepared("next-item")
    config.model.kind, config.model.switch_tokens = "item-causal", switch_tokens
    prep.layout = LAYOUTS.get("late-fusion").build(prep.codes, prep.layout.vocab, config.model, 4)
    assert build_model(config, prep).width == prep.layout.item_tokens.shape[1]


def test_bimodal_items_are_read_whole_and_targets_written_one_modality_wide():
    from mmgr.inference.generative import build_model
    from tests.helpers import prepared

    prep, config = prepared("syngr")
    config.model.kind = "item-causal"
    model = build_model(config, prep)
    widths = [tokens.shape[1] for tokens in prep.layout.targets.values()]
    assert (model.width, model.target_width) == (prep.layout.history_width, max(widths)) == (sum(widths), max(widths))


def test_targets_wider_than_a_history_item_are_refused_with_the_alternative():
    vocab = vocabulary(0)
    with pytest.raises(MmgrError, match="history items of 3 tokens and targets of 4.*model.kind=t5"):
        ItemCausalLM(ModelConfig(**SIZES), vocab, seed=0, item_width=3, target_width=4)
