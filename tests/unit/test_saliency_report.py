"""Which runs the saliency analysis measures (histories holding two modalities' codes) and which tokens count for a
modality (its content codes, not its appended collision level)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from mmgr.config import ModelConfig
from mmgr.layouts import LAYOUTS
from mmgr.report.saliency import bimodal_histories, content_kinds
from mmgr.tokenizers.codes import ModalityCodes, Vocabulary


def appended_codes(modality: str, seed: int) -> ModalityCodes:
    """12 items, two semantic levels of 4 and an appended collision level of 2 (all tuples unique)."""
    grid = np.array([(a, b) for a in range(4) for b in range(4)])[np.random.default_rng(seed).permutation(16)[:12]]
    return ModalityCodes(modality, np.hstack([grid, np.zeros((12, 1), dtype=np.int64)]), [4, 4, 2],
                         np.zeros(12, dtype=bool), {"collisions": "append"})


def world(layout: str, modalities: list[str]):
    codes = {m: appended_codes(m, seed) for seed, m in enumerate(modalities)}
    kind = LAYOUTS.get(layout)
    vocab = Vocabulary({m: codes[m].sizes for m in modalities}, kind.tasks(modalities))
    built = kind.build(codes, vocab, ModelConfig(layout=layout, modalities=modalities), 4)
    return codes, vocab, built


@pytest.mark.parametrize(("layout", "modalities", "expected"), [
    ("bimodal", ["text", "image"], True), ("late-fusion", ["text", "image"], True),
    ("unimodal", ["text", "image"], False), ("single", ["text"], False)])
def test_only_histories_holding_two_modalities_are_measured(layout, modalities, expected):
    _, _, built = world(layout, modalities)
    assert bimodal_histories(built, "u0") is expected


def test_a_modalitys_appended_collision_level_counts_for_none():
    codes, vocab, built = world("late-fusion", ["text", "image"])
    kinds = content_kinds(SimpleNamespace(layout=built, codes=codes)).numpy()
    for index, modality in enumerate(["text", "image"]):
        start = vocab.offsets(modality)
        assert (kinds[start[0]:start[0] + 8] == index).all()                     # the two semantic levels
        assert (kinds[start[2]:start[2] + 2] == -1).all()                        # the collision level
    assert (kinds[:len(vocab.specials)] == -1).all()
    plain = {m: ModalityCodes(m, c.codes[:, :2], [4, 4], c.missing) for m, c in codes.items()}
    unchanged = content_kinds(SimpleNamespace(layout=built, codes=plain)).numpy()
    np.testing.assert_array_equal(unchanged, vocab.modality_ids())
