"""Trie-constrained beam search for a causal generator: the cached search agrees with the no-cache reference,
padding and chunking change nothing, and every result is a real item scored by teacher forcing."""

from __future__ import annotations

import warnings

import pytest
import torch

from mmgr.config import ModelConfig
from mmgr.decoding import PrefixTrie
from mmgr.decoding.causal import causal_beam_search, left_align, reference_causal_beam_search
from mmgr.models.causal import build_causal
from mmgr.tokenizers.codes import Vocabulary
from tests.helpers import histories, make_items

pytestmark = pytest.mark.usefixtures("one_thread")

VOCAB = Vocabulary({"text": [4, 8, 8, 8, 4, 20]})            # 5 specials + 52 code tokens >= the 33 used here


@pytest.fixture(scope="module")
def model():
    cfg = ModelConfig(d_model=32, num_layers=2, num_heads=4, d_kv=8, d_ff=64, dropout=0.1)
    return build_causal(cfg, VOCAB, seed=0).eval()


@pytest.fixture(scope="module")
def trie() -> PrefixTrie:
    return PrefixTrie.build(make_items(depth=3), vocab_size=VOCAB.size)


@pytest.mark.parametrize("decoder", ["llama", "hf"])
def test_cached_search_passes_the_cache_by_its_current_name(model, trie, decoder):
    ids, mask = histories()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        causal_beam_search(model, ids, mask, trie, beam_size=5, top_k=5, decoder=decoder)
    assert [str(w.message) for w in caught if "past_key_values" in str(w.message)] == []


@pytest.fixture(scope="module")
def grouped_model():
    """A Llama with grouped-query attention (8 query heads on 2 key/value heads), as pretrained LMs have."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(1)
    config = LlamaConfig(vocab_size=VOCAB.size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=8, num_key_value_heads=2, head_dim=4, max_position_embeddings=256)
    return LlamaForCausalLM(config).eval()


@pytest.mark.parametrize("decoder", ["llama", "hf"])
@pytest.mark.parametrize("which", ["model", "grouped_model"])
def test_cached_search_matches_the_no_cache_reference(which, decoder, trie, request):
    model = request.getfixturevalue(which)
    ids, mask = histories()
    items, scores = causal_beam_search(model, ids, mask, trie, beam_size=8, top_k=5, decoder=decoder)
    ref_items, ref_scores = reference_causal_beam_search(model, ids, mask, trie, beam_size=8, top_k=5)
    assert torch.equal(items, ref_items)
    torch.testing.assert_close(scores, ref_scores, atol=1e-4, rtol=1e-4)


def test_the_shared_prompt_decoder_is_chosen_for_llama_and_agrees_with_the_plain_cache(model, trie):
    from mmgr.decoding.causal import SharedPromptLlamaStep, _make_step

    ids, mask = histories(batch=5, seed=7)
    assert isinstance(_make_step(model, *left_align(ids, mask), "auto"), SharedPromptLlamaStep)
    fast = causal_beam_search(model, ids, mask, trie, beam_size=20, top_k=10, decoder="auto")
    plain = causal_beam_search(model, ids, mask, trie, beam_size=20, top_k=10, decoder="hf")
    assert torch.equal(fast[0], plain[0])
    torch.testing.assert_close(fast[1], plain[1], atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="unknown decoder"):
        causal_beam_search(model, ids, mask, trie, decoder="nope")


def test_results_are_distinct_real_items_scored_by_teacher_forcing(model, trie):
    ids, mask = histories(batch=3)
    items, scores = causal_beam_search(model, ids, mask, trie, beam_size=10, top_k=10)
    assert (items >= 0).all() and all(len(set(row.tolist())) == 10 for row in items)
    assert (scores[:, :-1] >= scores[:, 1:]).all()
    for row in range(3):                                         # the score is the tuple's log-probability
        prompt = ids[row][mask[row].bool()]
        tokens = trie.item_tokens[items[row, 0]]
        with torch.no_grad():
            logits = model(input_ids=torch.cat([prompt, tokens])[None]).logits[0].float().log_softmax(-1)
        expected = sum(float(logits[len(prompt) - 1 + i, t]) for i, t in enumerate(tokens.tolist()))
        assert scores[row, 0].item() == pytest.approx(expected, abs=1e-4)


def test_padding_side_and_chunks_do_not_change_answers(model, trie):
    right, right_mask = histories(batch=6, seed=3)
    left, left_mask = left_align(right, right_mask)
    base = causal_beam_search(model, right, right_mask, trie, beam_size=6, top_k=4)
    for other in (causal_beam_search(model, left, left_mask, trie, beam_size=6, top_k=4),
                  causal_beam_search(model, right, right_mask, trie, beam_size=6, top_k=4, chunk_size=2)):
        assert torch.equal(other[0], base[0])
        torch.testing.assert_close(other[1], base[1], atol=1e-4, rtol=1e-4)
    length = int(right_mask[2].sum())
    single = causal_beam_search(model, right[2:3, :length], right_mask[2:3, :length], trie, beam_size=6, top_k=4)
    assert torch.equal(single[0][0], base[0][2])
