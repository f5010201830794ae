"""Prefix trie tensors and constrained beam search, checked against a dict trie, teacher forcing, exhaustive search,
a no-cache reference and Hugging Face `generate`, on a tiny random T5."""

from __future__ import annotations

import warnings

import pytest
import torch
from transformers import T5Config, T5ForConditionalGeneration

from mmgr.decoding import DictTrie, PrefixTrie, constrained_beam_search, reference_beam_search, sequence_log_probs
from mmgr.models.seq2seq import RecencyEmbedding
from tests.helpers import histories, make_items

pytestmark = pytest.mark.usefixtures("one_thread")

VOCAB = 60



def tiny_t5(seed: int = 0, **overrides) -> T5ForConditionalGeneration:
    torch.manual_seed(seed)
    config = T5Config(vocab_size=VOCAB, d_model=32, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=4, d_kv=8,
                      dropout_rate=0.1, pad_token_id=0, decoder_start_token_id=0, eos_token_id=2, **overrides)
    return T5ForConditionalGeneration(config).eval()


@pytest.fixture(scope="module")
def model() -> T5ForConditionalGeneration:
    return tiny_t5()


@pytest.fixture(scope="module")
def items() -> torch.Tensor:
    return make_items()


@pytest.fixture(scope="module")
def trie(items) -> PrefixTrie:
    return PrefixTrie.build(items, vocab_size=VOCAB)


# ---- trie -----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("depth", [3, 4])
def test_allowed_masks_and_steps_match_the_dict_trie(depth):
    items = make_items(depth)
    trie, reference = PrefixTrie.build(items, vocab_size=VOCAB), DictTrie(items.tolist())
    g = torch.Generator().manual_seed(2)
    prefixes = [row[:d] for row in items.tolist() for d in range(depth + 1)]         # every real prefix
    prefixes += [torch.randint(5, 33, (d,), generator=g).tolist() for d in range(depth + 1) for _ in range(30)]
    nodes = []
    for prefix in prefixes:
        node = torch.zeros(1, dtype=torch.int64)
        for token in prefix:
            node = trie.step(node, torch.tensor([token]))
        nodes.append(node)
    masks = trie.allowed_mask(torch.cat(nodes))                                     # (P, V)
    for prefix, mask in zip(prefixes, masks, strict=True):
        assert mask.nonzero()[:, 0].tolist() == reference.allowed_tokens_reference(prefix)
    assert trie.allowed_mask(torch.tensor([-1])).sum() == 0


def test_trie_maps_tuples_to_items_and_back(items, trie):
    assert trie.lookup(items).tolist() == list(range(len(items)))
    assert trie.lookup(torch.tensor([[5, 13, 28], [0, 0, 0], [12, 15, 22]])).tolist()[1:] == [-1, -1]
    padded = torch.stack([items[3], torch.zeros(3, dtype=torch.int64)])[None]    # (1, 2, L)
    assert torch.equal(trie.tokens_of(torch.tensor([[3, -1]])), padded)
    leaves = trie.step(trie.step(trie.step(torch.zeros(len(items), dtype=torch.int64), items[:, 0]), items[:, 1]),
                       items[:, 2])
    assert trie.items_of(leaves).tolist() == list(range(len(items)))
    assert (trie.items_of(torch.arange(trie.num_internal)) == -1).all()
    prefixes = {tuple(row[:d]) for row in items.tolist() for d in range(3)}
    assert trie.num_internal == len(prefixes) and trie.num_nodes == len(prefixes) + len(items)
    assert trie.to("cpu") is trie


def test_trie_rejects_shared_tuples_and_bad_shapes():
    with pytest.raises(ValueError, match="share a token tuple"):
        PrefixTrie.build(torch.tensor([[5, 6], [5, 6]]))
    with pytest.raises(ValueError, match="non-empty"):
        PrefixTrie.build(torch.zeros(0, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match="vocab_size"):
        PrefixTrie.build(torch.tensor([[5, 60]]), vocab_size=60)


def assert_matches_reference(trie: PrefixTrie, items: torch.Tensor) -> None:
    """Every prefix of `items` (and random ones): children windows and allowed tokens as the dict trie of `items`
    gives them, and every item found by its tuple."""
    reference, depth = DictTrie(items.tolist()), items.shape[1]
    g = torch.Generator().manual_seed(3)
    prefixes = {tuple(row[:d]) for row in items.tolist() for d in range(depth)}
    prefixes |= {tuple(torch.randint(0, VOCAB, (d,), generator=g).tolist()) for d in range(depth) for _ in range(20)}
    for prefix in sorted(prefixes):
        node = torch.zeros(1, dtype=torch.int64)
        for token in prefix:
            node = trie.step(node, torch.tensor([token]))
        allowed = reference.allowed_tokens_reference(prefix)
        assert trie.allowed_mask(node)[0].nonzero()[:, 0].tolist() == allowed
        window = trie.children_window(node, len(prefix))[0]
        assert ((window >= 0).nonzero()[:, 0] + trie.window_start[len(prefix)]).tolist() == allowed
    assert trie.lookup(items).tolist() == list(range(len(items))) and trie.num_items == len(items)


def borrowed_scores(trie: PrefixTrie, items: torch.Tensor, depth: int) -> list[list[float]]:
    """What `borrowed` makes of distinct scores (the window's column numbers) at every prefix of length `depth`."""
    out = []
    for prefix in sorted({tuple(row[:depth]) for row in items.tolist()}):
        node = torch.zeros(1, dtype=torch.int64)
        for token in prefix:
            node = trie.step(node, torch.tensor([token]))
        children = trie.children_window(node, depth)
        scores = torch.arange(children.shape[1], dtype=torch.float32)[None]
        out.append(trie.borrowed(node, depth, scores, children)[0].tolist())
    return out


def wide_collision_items() -> torch.Tensor:
    """2,000 semantic IDs of one item each (collision code 0) and one of 600 items: a 600-token collision window."""
    single = [[i // 50, 40 + i % 50, 100] for i in range(2000)]
    group = [[0, 40, 100 + code] for code in range(1, 600)]
    return torch.tensor(single + group)


def test_a_wide_collision_group_widens_only_its_own_row():
    items = wide_collision_items()
    trie = PrefixTrie.build(items)
    assert trie.window_size == (40, 50, 600)
    assert trie.nbytes < 300_000            # (internal nodes x widest window) int32 cells alone would be 4.9 MB
    assert trie.lookup(items).tolist() == list(range(len(items)))
    windows = trie.children_window(trie.step(trie.step(torch.zeros(2, dtype=torch.int64), items[[0, 1], 0]),
                                             items[[0, 1], 1]), 2)
    assert (windows[0] >= 0).sum() == 600 and (windows[1] >= 0).nonzero()[:, 0].tolist() == [0]


@pytest.mark.parametrize("depth", [3, 4])
def test_extended_tries_are_the_trie_of_every_item(depth):
    items = make_items(depth)
    catalog, added = items[:30], items[30:]
    base = PrefixTrie.build(catalog, vocab_size=VOCAB)
    one_by_one = base
    for row in added:
        one_by_one = one_by_one.extended(row[None], borrow_depths=[depth - 1])
    for trie in (base.extended(added, borrow_depths=[depth - 1]), one_by_one):
        assert_matches_reference(trie, items)
        rebuilt = PrefixTrie.build(items, vocab_size=VOCAB).borrowing(len(catalog), [depth - 1])
        assert trie.window_start == rebuilt.window_start and trie.window_size == rebuilt.window_size
        assert trie.borrow_depths == (depth - 1,)
        assert borrowed_scores(trie, items, depth - 1) == borrowed_scores(rebuilt, items, depth - 1)
    assert_matches_reference(base, catalog)                       # the trie it grew from is unchanged


def test_a_wide_collision_level_grows_in_place_and_older_tries_keep_their_items():
    items = wide_collision_items()
    base = PrefixTrie.build(items, vocab_size=4000)
    grown = base.extended(torch.tensor([[0, 40, 700], [39, 89, 101], [39, 90, 100]]), borrow_depths=[2])
    assert grown.children.data_ptr() == base.children.data_ptr()  # written in place: no rebuild
    assert grown.window_size == (40, 51, 601)
    everything = torch.cat([items, grown.item_tokens[len(items):]])
    assert grown.lookup(everything).tolist() == list(range(len(everything)))
    assert base.lookup(everything).tolist() == [*range(len(items)), -1, -1, -1]
    other = base.extended(torch.tensor([[0, 40, 750]]))            # an older trie: extended on its own copy
    assert other.lookup(torch.tensor([[0, 40, 750], [0, 40, 700]])).tolist() == [len(items), -1]
    assert grown.lookup(torch.tensor([[0, 40, 750], [0, 40, 700]])).tolist() == [-1, len(items)]
    many = grown
    for code in range(701, 3701):                                  # past the spare capacity: buffers grow
        many = many.extended(torch.tensor([[1, 41, code]]), borrow_depths=[2])
    assert many.children.data_ptr() != base.children.data_ptr()
    assert many.lookup(torch.tensor([[1, 41, 3700], [0, 40, 700]])).tolist() == [many.num_items - 1, len(items)]
    assert grown.lookup(torch.tensor([[1, 41, 701]])).tolist() == [-1]
    assert grown.lookup(everything).tolist() == list(range(len(everything)))      # rows moved in newer buffers


def test_extending_refuses_taken_tuples_and_tokens_outside_the_vocabulary(trie, items):
    with pytest.raises(ValueError, match="share a token tuple"):
        trie.extended(items[:1])
    with pytest.raises(ValueError, match="share a token tuple"):
        trie.extended(torch.tensor([[12, 20, 21], [12, 20, 21]]))
    with pytest.raises(ValueError, match="token ids in"):
        trie.extended(torch.tensor([[12, 20, VOCAB]]))
    assert trie.extended(torch.zeros(0, 3, dtype=torch.int64)) is trie


def test_hf_prefix_function_allows_trie_children_and_a_dead_end(trie):
    allowed = trie.reference().prefix_allowed_tokens_fn(decoder_start_token_id=0, dead_end_token_id=2)
    assert allowed(0, torch.tensor([0, 12])) == [15]
    assert allowed(0, torch.tensor([0, 12, 16])) == [2]


# ---- beam search ----------------------------------------------------------------------------------------------------

def assert_valid(items: torch.Tensor, scores: torch.Tensor, catalog: int) -> None:
    """Real items where the score is finite, -1 / -inf padding after them, distinct, best first."""
    finite = torch.isfinite(scores)
    assert ((items >= 0) & (items < catalog) == finite).all()
    assert (items[~finite] == -1).all() and (scores[~finite] == float("-inf")).all()
    for row, keep in zip(items.tolist(), finite.tolist(), strict=True):
        real = [i for i, k in zip(row, keep, strict=True) if k]
        assert len(set(real)) == len(real) and real == row[:len(real)]
    assert (scores[:, :-1] >= scores[:, 1:]).all()


def test_returns_distinct_real_items_scored_by_teacher_forcing(model, trie):
    ids, mask = histories()
    items, scores = constrained_beam_search(model, ids, mask, trie, beam_size=6, top_k=4)
    assert items.shape == scores.shape == (5, 4) and items.dtype == torch.int64
    assert_valid(items, scores, trie.num_items)
    assert torch.isfinite(scores).all()
    forced = sequence_log_probs(model, ids, mask, trie.tokens_of(items))
    torch.testing.assert_close(scores, forced, atol=1e-4, rtol=1e-5)


def test_beam_as_wide_as_the_catalog_is_exhaustive(model, trie):
    ids, mask = histories()
    n = trie.num_items
    items, scores = constrained_beam_search(model, ids, mask, trie, beam_size=n, top_k=7)
    every = trie.item_tokens[None].expand(len(ids), n, trie.depth)                 # (B, N, L)
    all_scores = sequence_log_probs(model, ids, mask, every)                        # (B, N)
    best, best_items = all_scores.topk(7, dim=1)
    assert torch.equal(items, best_items)
    torch.testing.assert_close(scores, best, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("made", ["rebuilt", "extended"])
def test_an_onboarded_collision_code_scores_as_its_best_catalog_sibling(model, items, made):
    prefix = items[0, :2].tolist()
    taken = {row[2] for row in items.tolist() if row[:2] == prefix}
    copy = [*prefix, next(t for t in range(21, 29) if t not in taken)]     # a catalog item's semantic ID, new code
    fresh = [12, 20, 21]                                                   # a prefix no catalog item has
    catalog = PrefixTrie.build(items, vocab_size=VOCAB)
    if made == "rebuilt":
        onboarded = PrefixTrie.build(torch.cat([items, torch.tensor([copy, fresh])]), vocab_size=VOCAB)
        trie = onboarded.borrowing(len(items), depths=[2])
    else:
        trie = catalog.extended(torch.tensor([copy, fresh]), borrow_depths=[2])
    ids, mask = histories()
    n = trie.num_items
    found, scores = constrained_beam_search(model, ids, mask, trie, beam_size=n, top_k=n)
    by_item = torch.full((len(ids), n), float("nan")).scatter_(1, found, scores)         # (B, N)
    own = sequence_log_probs(model, ids, mask, trie.item_tokens[None].expand(len(ids), n, 3))
    torch.testing.assert_close(by_item[:, :-2], own[:, :-2], atol=1e-4, rtol=1e-5)        # catalog items unchanged
    siblings = [i for i, row in enumerate(items.tolist()) if row[:2] == prefix]
    torch.testing.assert_close(by_item[:, -2], own[:, siblings].amax(dim=1), atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(by_item[:, -1], own[:, -1], atol=1e-4, rtol=1e-5)          # no sibling: its own
    assert catalog.borrow is None and trie.to("cpu").borrow_depths == (2,)


def test_a_new_code_off_the_catalogs_prefixes_scores_as_its_best_catalog_sibling(model, items):
    """Borrowing at every depth: a new item whose second code no catalog item has under its first scores that code
    as the best catalog sibling's, and its third (under a prefix only it has) by the model."""
    first = int(items[0, 0])
    siblings = sorted({row[1] for row in items.tolist() if row[0] == first})
    novel = [first, next(t for t in range(13, 21) if t not in siblings), 21]
    trie = PrefixTrie.build(items, vocab_size=VOCAB).extended(torch.tensor([novel]), borrow_depths=[0, 1, 2])
    ids, mask = histories()
    n = trie.num_items
    found, scores = constrained_beam_search(model, ids, mask, trie, beam_size=n, top_k=n)
    by_item = torch.full((len(ids), n), float("nan")).scatter_(1, found, scores)         # (B, N)

    def log_prob(tuples: list[list[int]]) -> torch.Tensor:                                # (B, len(tuples))
        return sequence_log_probs(model, ids, mask, torch.tensor(tuples)[None].expand(len(ids), -1, -1))

    best_sibling = log_prob([[first, s] for s in siblings]).amax(dim=1)                   # P(c0) P(c1 | c0), best
    expected = best_sibling + log_prob([novel])[:, 0] - log_prob([novel[:2]])[:, 0]      # + its own P(c2 | c0 c1)
    torch.testing.assert_close(by_item[:, -1], expected, atol=1e-4, rtol=1e-5)
    own = log_prob(items.tolist())
    torch.testing.assert_close(by_item[:, :-1], own, atol=1e-4, rtol=1e-5)               # catalog items unchanged


def test_top_k_beyond_the_catalog_pads(model):
    items = torch.tensor([[11, 13, 21], [11, 14, 22], [12, 15, 23], [5, 15, 23]])
    trie = PrefixTrie.build(items, vocab_size=VOCAB)
    ids, mask = histories(3)
    found, scores = constrained_beam_search(model, ids, mask, trie, beam_size=8, top_k=6)
    assert_valid(found, scores, 4)
    assert (found[:, 4:] == -1).all() and torch.isinf(scores[:, 4:]).all()
    assert sorted(found[0, :4].tolist()) == [0, 1, 2, 3]


@pytest.mark.parametrize("decoder", ["t5", "hf"])
def test_narrow_beams_never_return_dead_tuples(model, decoder):
    """Beams wider than the prefixes' completions (dead -inf beams) and narrower ones: dead beams stay -1."""
    items = torch.tensor([[12, 15, 23], [11, 13, 21], [11, 13, 22]])
    trie = PrefixTrie.build(items, vocab_size=VOCAB)
    ids, mask = histories(4)
    for beam, top_k in ((1, 1), (2, 2), (5, 5)):
        found, scores = constrained_beam_search(model, ids, mask, trie, beam_size=beam, top_k=top_k,
                                                decoder=decoder)
        assert_valid(found, scores, 3)
        ref_items, ref_scores = reference_beam_search(model, ids, mask, trie, beam_size=beam, top_k=top_k)
        assert torch.equal(found, ref_items)
        torch.testing.assert_close(scores, ref_scores.float(), atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("decoder", ["t5", "hf"])
def test_cached_decoders_match_the_no_cache_reference(model, trie, decoder):
    ids, mask = histories()
    items, scores = constrained_beam_search(model, ids, mask, trie, beam_size=5, top_k=5, decoder=decoder)
    ref_items, ref_scores = reference_beam_search(model, ids, mask, trie, beam_size=5, top_k=5)
    assert torch.equal(items, ref_items)
    torch.testing.assert_close(scores, ref_scores.float(), atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("decoder", ["t5", "hf"])
def test_cached_decoders_pass_the_cache_by_its_current_name(model, trie, decoder):
    """transformers 5 deprecates `past_key_values` (a FutureWarning on every search); the decoders use `cache`."""
    ids, mask = histories()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        constrained_beam_search(model, ids, mask, trie, beam_size=5, top_k=5, decoder=decoder)
    assert [str(w.message) for w in caught if "past_key_values" in str(w.message)] == []


@pytest.mark.parametrize("overrides", [{"tie_word_embeddings": False}, {"feed_forward_proj": "gated-gelu"}])
def test_t5_decoder_follows_config_variants(trie, overrides):
    """Untied output layer (no decoder output rescaling, as mmgr.models.seq2seq builds it) and gated feed-forward."""
    model = tiny_t5(3, **overrides)
    ids, mask = histories()
    items, scores = constrained_beam_search(model, ids, mask, trie, beam_size=5, top_k=5, decoder="t5")
    ref_items, ref_scores = reference_beam_search(model, ids, mask, trie, beam_size=5, top_k=5)
    assert torch.equal(items, ref_items)
    torch.testing.assert_close(scores, ref_scores.float(), atol=1e-4, rtol=1e-5)


def test_recency_distances_count_from_the_last_real_token_either_padding():
    embedding = RecencyEmbedding(torch.nn.Embedding(VOCAB, 4), distances=3, pad=0)
    ids = torch.tensor([[5, 6, 7, 8, 0, 0], [0, 0, 5, 6, 7, 8]])
    assert embedding.distances(ids).tolist() == [[2, 2, 1, 0, 0, 0], [2, 2, 2, 2, 1, 0]]


def test_recency_embeddings_decode_alike_either_padding_and_match_the_reference(trie):
    model = tiny_t5(4)
    model.encoder.embed_tokens = RecencyEmbedding(model.shared, distances=6, pad=0)
    ids, mask = histories(6)
    left_ids, left_mask = histories(6, left=True)                 # the same histories, padded on the left
    items, scores = constrained_beam_search(model, ids, mask, trie, beam_size=6, top_k=4, decoder="t5")
    ref_items, ref_scores = reference_beam_search(model, ids, mask, trie, beam_size=6, top_k=4)
    assert torch.equal(items, ref_items)
    torch.testing.assert_close(scores, ref_scores.float(), atol=1e-4, rtol=1e-5)
    left = constrained_beam_search(model, left_ids, left_mask, trie, beam_size=6, top_k=4, decoder="t5")
    assert torch.equal(left[0], items)
    plain = constrained_beam_search(tiny_t5(4), ids, mask, trie, beam_size=6, top_k=4, decoder="t5")
    assert not torch.allclose(plain[1], scores)                   # the recency embeddings are read


def test_batching_padding_and_chunks_do_not_change_answers(model, trie):
    ids, mask = histories(6)
    left_ids, left_mask = histories(6, left=True)
    items, scores = constrained_beam_search(model, ids, mask, trie, beam_size=6, top_k=4)
    for chunk in (1, 4):
        again = constrained_beam_search(model, ids, mask, trie, beam_size=6, top_k=4, chunk_size=chunk)
        assert torch.equal(again[0], items)
        torch.testing.assert_close(again[1], scores, atol=1e-4, rtol=1e-5)
    left = constrained_beam_search(model, left_ids, left_mask, trie, beam_size=6, top_k=4)
    assert torch.equal(left[0], items)
    for row in range(len(ids)):
        keep = mask[row].bool()
        alone = constrained_beam_search(model, ids[row][keep][None], mask[row][keep][None], trie, 6, 4)
        assert torch.equal(alone[0][0], items[row])
        torch.testing.assert_close(alone[1][0], scores[row], atol=1e-4, rtol=1e-5)


def test_a_beam_width_per_row_gives_each_row_its_search_alone(model, trie):
    """One search with widths 2, 6, 3, ... per row: each row's items and scores are those of its own width alone."""
    ids, mask = histories(6)
    widths = torch.tensor([2, 6, 3, 1, 4, 6])[:len(ids)]
    items, scores = constrained_beam_search(model, ids, mask, trie, beam_size=6, top_k=2, row_beams=widths)
    for row, width in enumerate(widths.tolist()):
        keep = mask[row].bool()
        alone = constrained_beam_search(model, ids[row][keep][None], mask[row][keep][None], trie, width,
                                        min(width, 2))
        assert torch.equal(items[row, :alone[0].shape[1]], alone[0][0])
        torch.testing.assert_close(scores[row, :alone[0].shape[1]], alone[1][0], atol=1e-4, rtol=1e-5)
        assert (items[row, width:] == -1).all()                  # a narrower row has no more items than its width


class FlatStep:
    """Every token equally likely: every candidate ties."""

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        return torch.zeros(len(tokens), VOCAB)

    def reorder(self, origin: torch.Tensor, beams: int) -> None:
        pass


def test_tied_candidates_keep_their_order_whatever_the_width(trie):
    from mmgr.decoding.beam import search_trie, top_items

    start = torch.zeros(1, dtype=torch.int64)
    wide = top_items(trie, *search_trie(FlatStep(), trie, 3, 8, start, torch.tensor([2, 8, 5])), 8)[0]
    for row, width in enumerate((2, 8, 5)):
        alone = top_items(trie, *search_trie(FlatStep(), trie, 1, width, start), width)[0][0]
        assert torch.equal(wide[row, :width], alone)


def test_agrees_with_hugging_face_generate(model, trie):
    ids, mask = histories()
    items, scores = constrained_beam_search(model, ids, mask, trie, beam_size=6, top_k=3)
    allowed = trie.reference().prefix_allowed_tokens_fn(0, 2)
    out = model.generate(input_ids=ids, attention_mask=mask, num_beams=6, num_return_sequences=3, do_sample=False,
                         max_new_tokens=trie.depth, prefix_allowed_tokens_fn=allowed, length_penalty=0.0,
                         output_scores=True, return_dict_in_generate=True)
    assert torch.equal(trie.lookup(out.sequences[:, 1:]).view(-1, 3), items)
    torch.testing.assert_close(out.sequences_scores.view(-1, 3), scores, atol=1e-4, rtol=1e-5)


def test_dropout_is_off_and_the_training_flag_is_restored(trie):
    model = tiny_t5().train()
    ids, mask = histories()
    first = constrained_beam_search(model, ids, mask, trie, beam_size=4, top_k=2)
    second = constrained_beam_search(model, ids, mask, trie, beam_size=4, top_k=2)
    assert model.training and torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])


def test_rejects_top_k_above_beam(model, trie):
    ids, mask = histories()
    with pytest.raises(ValueError, match="top_k"):
        constrained_beam_search(model, ids, mask, trie, beam_size=2, top_k=3)
