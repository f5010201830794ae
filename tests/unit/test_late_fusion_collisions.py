"""Late fusion resolves collisions once, over the joint tuple: the text half of an item keeps only its semantic
codes, so items whose text SIDs collide share a trie node that branches on their image codes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmgr.config import ModelConfig
from mmgr.decoding.trie import PrefixTrie
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
