"""Every registered sequence layout passes the same checks: what the generator reads and what it must produce."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmgr.config import ModelConfig
from mmgr.decoding.trie import PrefixTrie
from mmgr.errors import MmgrError
from mmgr.layouts import LAYOUTS
from mmgr.layouts.base import prompt, token_modalities
from mmgr.tokenizers.codes import ModalityCodes, Vocabulary

MAX_HISTORY = 5


def codes() -> dict[str, ModalityCodes]:
    """40 items with distinct 3-level codes per modality."""
    rng = np.random.default_rng(0)
    tuples = np.array([(a, b, c) for a in range(4) for b in range(4) for c in range(3)])[rng.permutation(48)[:40]]
    return {m: ModalityCodes(m, tuples.copy(), [4, 4, 3], np.zeros(40, dtype=bool)) for m in ("text", "image")}


def build(name: str, modalities: list[str], buckets: int, **model) -> object:
    c = codes()
    vocab = Vocabulary({m: list(c[m].sizes) for m in modalities}, LAYOUTS.get(name).tasks(modalities),
                       user_buckets=buckets)
    return LAYOUTS.get(name).build(c, vocab, ModelConfig(layout=name, modalities=modalities, **model), MAX_HISTORY)


BUILDERS = {  # small instances per registered layout; a new layout must be added here
    "single": lambda buckets: build("single", ["text"], buckets),
    "late-fusion": lambda buckets: build("late-fusion", ["text", "image"], buckets),
    "late-fusion+switch": lambda buckets: build("late-fusion", ["text", "image"], buckets, switch_tokens=True),
    "bimodal": lambda buckets: build("bimodal", ["text", "image"], buckets),
    "unimodal": lambda buckets: build("unimodal", ["text", "image"], buckets),
    "unimodal-wide": lambda buckets: build("unimodal-wide", ["text", "image"], buckets),
}


def test_every_registered_layout_is_covered():
    assert sorted({name.split("+")[0] for name in BUILDERS}) == LAYOUTS.names()


@pytest.fixture(params=[(name, buckets) for name in sorted(BUILDERS) for buckets in (0, 16)],
                ids=lambda p: f"{p[0]}-buckets{p[1]}")
def layout(request):
    name, buckets = request.param
    return BUILDERS[name](buckets)


def test_item_tokens_are_distinct_code_tokens(layout):
    tokens = layout.item_tokens
    assert tokens.dtype == np.int64 and tokens.ndim == 2 and len(tokens) == 40
    assert len(np.unique(tokens, axis=0)) == 40                        # one decodable tuple per item
    first_code_token = len(layout.vocab.specials) + layout.vocab.user_buckets
    codes_only = tokens[tokens != layout.vocab.token("<switch>")]          # code tokens, and switches between them
    assert codes_only.min() >= first_code_token and tokens.max() < layout.vocab.size


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
    assert layout.targets and all(t.shape[0] == 40 and t.dtype == np.int64 for t in layout.targets.values())
    for tokens in layout.targets.values():
        trie = PrefixTrie.build(torch.from_numpy(tokens))
        assert trie.num_items == 40
        assert trie.lookup(torch.from_numpy(tokens)).tolist() == list(range(40))


def test_target_inputs_ask_for_their_target_and_keep_the_history(layout):
    """A target's input is its task prompts, then the history: whole, or (unimodal histories) with only some
    modalities' code tokens, in order, every user / <eos> token kept; the others dropped or (a wide layout) written
    as <pad> in their places."""
    history = layout.encoder_tokens("u", np.array([3, 5]))
    inputs = {target: layout.target_input(target, history) for target in layout.targets}
    assert len({row.tobytes() for row in inputs.values()}) == len(inputs)      # each target asked differently
    tasks = {layout.vocab.task_token(t) for t in layout.vocab.tasks}
    kinds = token_modalities(layout.vocab, history)
    for row in inputs.values():
        prompts = next((i for i, token in enumerate(row.tolist()) if token not in tasks), len(row))
        rest, kept = row[prompts:].tolist(), set(token_modalities(layout.vocab, row[prompts:]).tolist())
        shown = [t for t in rest if t != layout.vocab.token("<pad>")]
        assert row.dtype == np.int64 and shown == [t for t, k in zip(history.tolist(), kinds, strict=True) if k in kept]
        assert len(rest) in (len(shown), len(history))
        assert kept - {-1} and -1 in kept                                       # some codes, and the <eos>


def test_item_tokens_are_the_modalities_codes_in_order_with_switches(layout):
    vocab, switch = layout.vocab, layout.vocab.token("<switch>")
    expected_tokens, expected_kinds = [], []
    for index, modality in enumerate(vocab.levels):
        if index and getattr(layout, "switch_tokens", False):
            expected_tokens.append(np.full((40, 1), switch))
            expected_kinds.append(np.full((40, 1), -1))                 # the switch belongs to no modality
        expected_tokens.append(layout.modality_tokens[modality])
        expected_kinds.append(np.full(layout.modality_tokens[modality].shape, index))
    np.testing.assert_array_equal(layout.item_tokens, np.concatenate(expected_tokens, axis=1))
    np.testing.assert_array_equal(token_modalities(vocab, layout.item_tokens), np.concatenate(expected_kinds, axis=1))
    np.testing.assert_array_equal(token_modalities(vocab, torch.from_numpy(layout.item_tokens)).numpy(),
                                  np.concatenate(expected_kinds, axis=1))
    history = layout.encoder_tokens("u", np.array([3, 5]))               # history items are written the same way
    body = history[1:-1] if layout.vocab.user_buckets else history[:-1]
    np.testing.assert_array_equal(body, layout.item_tokens[[3, 5]].reshape(-1))


def test_every_decoded_tuple_is_a_real_item(layout):
    rng = np.random.default_rng(1)
    for tokens in layout.targets.values():
        trie = PrefixTrie.build(torch.from_numpy(tokens), vocab_size=layout.vocab.size)
        reference = trie.reference()
        for _ in range(50):                                               # random walks down the trie end at items
            path: list[int] = []
            for _ in range(trie.depth):
                path.append(int(rng.choice(sorted(reference.allowed_tokens_reference(path)))))
            item = reference.item(path)
            assert item >= 0 and tokens[item].tolist() == path


def test_task_prompts_wrap_one_modalitys_codes():
    vocab = Vocabulary({"text": [4, 4, 3], "image": [4, 4, 3]}, tasks=("text->image", "image->text"))
    layout = LAYOUTS.get("late-fusion").build(codes(), vocab, ModelConfig(layout="late-fusion",
                                                                    modalities=["text", "image"]), MAX_HISTORY)
    row = prompt(vocab, "text->image", layout.modality_tokens["text"][7])
    assert row.tolist() == [vocab.task_token("text->image"), *layout.modality_tokens["text"][7], vocab.token("<eos>")]
    assert token_modalities(vocab, row).tolist() == [-1, 0, 0, 0, -1]
    with pytest.raises(MmgrError, match="not in the vocabulary"):
        prompt(vocab, "image->caption", layout.modality_tokens["image"][0])
