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


def catalog(vocab: Vocabulary, n: int = 40) -> torch.Tensor:
    """n distinct items as code-token tuples (n, 3)."""
    g = torch.Generator().manual_seed(0)
    codes = torch.unique(torch.stack([torch.randint(0, s, (3 * n,), generator=g) for s in LEVELS], dim=1), dim=0)[:n]
    return codes + torch.tensor(vocab.offsets("text"))


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


def test_layouts_with_several_targets_are_refused_with_the_alternative():
    from mmgr.inference.generative import build_model
    from tests.helpers import prepared

    prep, config = prepared("syngr")
    config.model.kind = "item-causal"
    with pytest.raises(MmgrError, match="one token tuple per item.*2 targets.*model.kind=t5"):
        build_model(config, prep)
