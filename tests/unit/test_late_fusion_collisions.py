"""Late fusion resolves collisions once, over the joint tuple: the text half of an item keeps only its semantic
codes, so items whose text SIDs collide share a trie node that branches on their image codes."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch

from mmgr.config import ModelConfig, load_config
from mmgr.data.dataset import ITEM_SCHEMA, SEQUENCE_SCHEMA, Dataset
from mmgr.data.splits import leave_one_out
from mmgr.decoding.trie import PrefixTrie
from mmgr.inference.prepared import LayoutRecipe, Prepared, compose, with_new_items
from mmgr.layouts import LAYOUTS
from mmgr.tokenizers.codes import ModalityCodes, Vocabulary
from mmgr.tokenizers.collisions import append_level

TEXT = np.array([[0, 1], [0, 1], [0, 1], [2, 0], [3, 3]])     # items 0-2 share their text SID
IMAGE = np.array([[1, 1], [2, 0], [2, 0], [1, 1], [0, 2]])    # items 1 and 2 also share their image SID


def appended(modality: str, semantic: np.ndarray) -> ModalityCodes:
    resolved, extra = append_level(semantic, capacity=4)
    return ModalityCodes(modality, resolved, [4, 4, extra], np.zeros(len(semantic), dtype=bool),
                         {"collisions": "append"})


def late_fusion(switch_tokens: bool = False) -> tuple[object, Vocabulary]:
    codes = {"text": appended("text", TEXT), "image": appended("image", IMAGE)}
    vocab = Vocabulary({m: list(c.sizes) for m, c in codes.items()})
    config = ModelConfig(layout="late-fusion", modalities=["text", "image"], switch_tokens=switch_tokens)
    return LAYOUTS.get("late-fusion").build(codes, vocab, config, 5), vocab


def test_the_text_half_is_its_semantic_codes_and_one_joint_level_ends_the_tuple():
    layout, vocab = late_fusion()
    text, image = vocab.offsets("text"), vocab.offsets("image")
    expected = np.concatenate([TEXT + text[:2], IMAGE + image[:2], [[image[2] + n] for n in (0, 0, 1, 0, 0)]], 1)
    np.testing.assert_array_equal(layout.item_tokens, expected)
    assert len(np.unique(layout.item_tokens, axis=0)) == len(TEXT)


@pytest.mark.parametrize("switch_tokens", [False, True])
def test_items_whose_text_sids_collide_branch_on_their_image_codes(switch_tokens):
    layout, vocab = late_fusion(switch_tokens)
    trie = PrefixTrie.build(torch.from_numpy(layout.item_tokens), vocab_size=vocab.size).reference()
    shared = layout.item_tokens[0, :2 + switch_tokens].tolist()      # the shared text SID (and the <switch>)
    image_starts = {int(t) for t in layout.item_tokens[:3, 2 + switch_tokens]}
    assert len(image_starts) == 2 and sorted(trie.allowed_tokens_reference(shared)) == sorted(image_starts)


def catalog_rows(ids: list[str]) -> pa.Table:
    return pa.Table.from_pylist([{"item_id": i, "title": i, "categories": [], "has_text": True, "has_image": False}
                                 for i in ids], schema=ITEM_SCHEMA)


def window_answers(trie: PrefixTrie, items: np.ndarray) -> list[tuple]:
    """At every prefix of every item: its children over the depth's window, and what `borrowed` makes of distinct
    scores there."""
    answers = []
    for prefix in sorted({tuple(row[:d]) for row in items.tolist() for d in range(items.shape[1])}):
        node = torch.zeros(1, dtype=torch.int64)
        for token in prefix:
            node = trie.step(node, torch.tensor([token]))
        children = trie.children_window(node, len(prefix))
        scores = torch.arange(children.shape[1], dtype=torch.float32)[None]
        answers.append((prefix, (children >= 0).tolist(), trie.borrowed(node, len(prefix), scores, children).tolist()))
    return answers


def test_onboarded_items_extend_the_trie_as_a_rebuild_of_every_item_would():
    codes = {"text": appended("text", TEXT), "image": appended("image", IMAGE)}
    vocab = Vocabulary({m: list(c.sizes) for m, c in codes.items()})
    config = load_config(overrides=["model.layout=late-fusion", "model.modalities=[text,image]"])
    dataset = Dataset("tiny", catalog_rows([f"i{n}" for n in range(5)]), pa.Table.from_pylist(
        [{"user_id": "u0", "items": [0, 1, 2], "timestamps": [0, 1, 2]}], schema=SEQUENCE_SCHEMA))
    recipe = LayoutRecipe.of(config)
    prep = Prepared(dataset, ["u0"], leave_one_out(dataset.item_sequences(), 5), codes,
                    *compose(codes, vocab, recipe), {}, recipe=recipe)
    new = {"text": codes["text"].with_row(np.array([0, 1, 3]), False).with_row(np.array([1, 1, 0]), False),
           "image": codes["image"].with_row(np.array([2, 0, 2]), False).with_row(np.array([3, 3, 0]), False)}
    grown = with_new_items(prep, new, catalog_rows(["new-1", "new-2"]))     # item 1's SIDs, then new ones
    layout, rebuilt = compose(new, vocab, recipe, onboarded=2)
    tokens = layout.targets["item"]
    assert grown.onboarded == 2 and np.array_equal(grown.layout.targets["item"], tokens)
    assert grown.tries["item"].lookup(torch.from_numpy(tokens)).tolist() == list(range(7))
    depths = tuple(range(tokens.shape[1]))        # new SIDs leave the catalog's prefixes before the collision level
    assert grown.tries["item"].borrow_depths == rebuilt["item"].borrow_depths == depths
    assert window_answers(grown.tries["item"], tokens) == window_answers(rebuilt["item"], tokens)
    assert prep.tries["item"].lookup(torch.from_numpy(tokens)).tolist() == [*range(5), -1, -1]
    assert grown.tries["item"].children.data_ptr() == prep.tries["item"].children.data_ptr()   # no rebuild
