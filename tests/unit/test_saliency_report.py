"""Which training rows the saliency analysis measures (those whose input holds two modalities' codes) and which
tokens count for a modality (its content codes, not its appended collision level)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from mmgr.config import ModelConfig
from mmgr.evaluation.synergy import rows_holding_every_modality
from mmgr.layouts import LAYOUTS
from mmgr.report.saliency import content_kinds
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


def layout_rows(layout: str, modalities: list[str]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The layout's content kinds and one batch: each target's input for two users' histories of three items."""
    codes, _, built = world(layout, modalities)
    inputs = [np.asarray(built.target_input(target, built.encoder_tokens(user, np.arange(3))))
              for target in built.targets for user in ("u0", "u1")]
    width = max(map(len, inputs))
    ids = torch.tensor(np.stack([np.pad(row, (0, width - len(row))) for row in inputs]))
    mask = torch.tensor(np.stack([np.arange(width) < len(row) for row in inputs])).long()
    return content_kinds(SimpleNamespace(layout=built, codes=codes)), {"input_ids": ids, "attention_mask": mask}


@pytest.mark.parametrize(("layout", "modalities", "measured"), [
    ("bimodal", ["text", "image"], 4), ("late-fusion", ["text", "image"], 2),
    ("unimodal", ["text", "image"], 0), ("single", ["text"], 0)])
def test_only_rows_holding_two_modalities_are_measured(layout, modalities, measured):
    kinds, batch = layout_rows(layout, modalities)
    kept = rows_holding_every_modality([batch], kinds, 2, rows=100)
    assert sum(len(part["input_ids"]) for part in kept) == measured


def test_rows_are_gathered_in_order_until_enough_and_cut_to_those_holding_every_modality():
    kinds = torch.tensor([-1, 0, 0, 1, 1])                                   # token 0: pad; 1-2 text; 3-4 image
    ones = torch.ones(3, 2, dtype=torch.int64)
    first = {"input_ids": torch.tensor([[1, 3], [1, 2], [4, 2]]), "attention_mask": ones}
    second = {"input_ids": torch.tensor([[2, 4], [3, 3], [1, 4]]), "attention_mask": ones}
    padded = {"input_ids": torch.tensor([[1, 3], [1, 3], [1, 3]]), "attention_mask": ones * torch.tensor([1, 0])}
    kept = rows_holding_every_modality([padded, first, second, first], kinds, 2, rows=3)
    assert [part["input_ids"].tolist() for part in kept] == [[[1, 3], [4, 2]], [[2, 4], [1, 4]]]
    assert rows_holding_every_modality([padded], kinds, 2, rows=3) == []


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
