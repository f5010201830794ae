"""Every registered sequence layout passes the same checks: what the generator reads and what it must produce."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmgr.decoding.trie import PrefixTrie
from mmgr.errors import MmgrError
from mmgr.layouts.base import LAYOUTS, SingleSidLayout
from mmgr.tokenizers.codes import ModalityCodes

MAX_HISTORY = 5


def codes() -> dict[str, ModalityCodes]:
    """40 items with distinct 3-level codes per modality."""
    rng = np.random.default_rng(0)
    tuples = np.array([(a, b, c) for a in range(4) for b in range(4) for c in range(3)])[rng.permutation(48)[:40]]
    return {m: ModalityCodes(m, tuples.copy(), [4, 4, 3], np.zeros(40, dtype=bool)) for m in ("text", "image")}


BUILDERS = {  # one small instance per registered layout; a new layout must be added here
    "single": lambda c, buckets: SingleSidLayout.from_codes(c["text"], MAX_HISTORY, user_buckets=buckets),
}


def test_every_registered_layout_is_covered():
    assert sorted(BUILDERS) == LAYOUTS.names()


@pytest.fixture(params=[(name, buckets) for name in sorted(BUILDERS) for buckets in (0, 16)],
                ids=lambda p: f"{p[0]}-buckets{p[1]}")
def layout(request):
    name, buckets = request.param
    return BUILDERS[name](codes(), buckets)


def test_item_tokens_are_distinct_code_tokens(layout):
    tokens = layout.item_tokens
    assert tokens.dtype == np.int64 and tokens.ndim == 2 and len(tokens) == 40
    assert len(np.unique(tokens, axis=0)) == 40                        # one decodable tuple per item
    first_code_token = len(layout.vocab.specials) + layout.vocab.user_buckets
    assert tokens.min() >= first_code_token and tokens.max() < layout.vocab.size


def test_encoder_tokens_are_valid_bounded_and_deterministic(layout):
    history = np.array([3, 7, 1, 9, 12, 30, 2, 5])
    tokens = layout.encoder_tokens("user-1", history)
    assert tokens.dtype == np.int64 and tokens.ndim == 1
    assert tokens.min() >= 0 and tokens.max() < layout.vocab.size and 0 not in tokens   # 0 is padding
    np.testing.assert_array_equal(tokens, layout.encoder_tokens("user-1", history))
    longer = layout.encoder_tokens("user-1", np.concatenate([[20, 21, 22], history]))
    np.testing.assert_array_equal(longer, tokens)                      # only the most recent items count
    assert tokens[-1] == layout.vocab.token("<eos>")


def test_recent_items_appear_in_the_input(layout):
    tokens = layout.encoder_tokens("user-1", np.array([4, 6]))
    for item in (4, 6):
        assert set(layout.item_tokens[item]) <= set(tokens.tolist())


def test_user_token_only_with_buckets(layout):
    a, b = (layout.encoder_tokens(user, np.array([1, 2])) for user in ("alice", "bob"))
    if layout.vocab.user_buckets:
        assert layout.vocab.user_token("alice") in a.tolist()
    else:
        np.testing.assert_array_equal(a, b)                            # no user information without buckets


def test_bad_histories_are_clear_errors(layout):
    with pytest.raises(MmgrError, match="empty history"):
        layout.encoder_tokens("u", np.array([], dtype=np.int64))
    with pytest.raises(MmgrError, match="unknown item"):
        layout.encoder_tokens("u", np.array([1, 40]))
    with pytest.raises(MmgrError, match="unknown item"):
        layout.encoder_tokens("u", np.array([-1]))


def test_decoding_trie_maps_every_target_back_to_its_item(layout):
    trie = PrefixTrie.build(torch.from_numpy(layout.item_tokens))
    assert trie.num_items == 40
    assert trie.lookup(torch.from_numpy(layout.item_tokens)).tolist() == list(range(40))
