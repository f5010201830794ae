"""Which training rows the saliency analysis measures (histories whose input holds two modalities' codes, not item
translations) and which tokens count for a modality (its content codes, not its appended collision level)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from mmgr.config import ModelConfig
from mmgr.evaluation.synergy import history_rows
from mmgr.layouts import LAYOUTS
from mmgr.layouts.base import translation_prompts, translation_task
from mmgr.objectives.multitask import MultitaskObjective
from mmgr.report.saliency import content_kinds
from mmgr.tokenizers.codes import ModalityCodes, Vocabulary


def appended_codes(modality: str, seed: int) -> ModalityCodes:
    """12 items, two semantic levels of 4 and an appended collision level of 2 (all tuples unique)."""
    grid = np.array([(a, b) for a in range(4) for b in range(4)])[np.random.default_rng(seed).permutation(16)[:12]]
    return ModalityCodes(modality, np.hstack([grid, np.zeros((12, 1), dtype=np.int64)]), [4, 4, 2],
                         np.zeros(12, dtype=bool), {"collisions": "append"})


def world(layout: str, modalities: list[str], tasks: tuple[str, ...] = ()):
    codes = {m: appended_codes(m, seed) for seed, m in enumerate(modalities)}
    kind = LAYOUTS.get(layout)
    vocab = Vocabulary({m: codes[m].sizes for m in modalities}, (*kind.tasks(modalities), *tasks))
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
    kept = history_rows([batch], kinds, 2, torch.zeros(len(kinds), dtype=torch.bool), rows=100)
    assert sum(len(part["input_ids"]) for part in kept) == measured


def test_rows_are_gathered_in_order_until_enough_and_cut_to_histories_holding_every_modality():
    kinds = torch.tensor([-1, 0, 0, 1, 1, -1])              # token 0: pad; 1-2 text; 3-4 image; 5 a translation prompt
    translations = torch.arange(6) == 5
    ones = torch.ones(3, 3, dtype=torch.int64)

    def batch(rows: list[list[int]], mask: torch.Tensor = ones) -> dict[str, torch.Tensor]:
        ids = torch.tensor(rows)
        return {"input_ids": ids, "attention_mask": mask, "labels": ids * 10}

    first, second = batch([[1, 3, 0], [1, 2, 0], [4, 2, 0]]), batch([[2, 4, 0], [5, 1, 3], [1, 4, 4]])
    padded = batch([[1, 3, 5], [1, 3, 5], [1, 3, 5]], ones * torch.tensor([1, 0, 0]))   # image and prompt unattended
    kept = history_rows([padded, first, second, first], kinds, 2, translations, rows=3)
    assert [part["input_ids"].tolist() for part in kept] == [[[1, 3, 0], [4, 2, 0]], [[2, 4, 0], [1, 4, 4]]]
    assert [part["labels"].tolist() for part in kept] == [[[10, 30, 0], [40, 20, 0]], [[20, 40, 0], [10, 40, 40]]]
    assert history_rows([padded], kinds, 2, translations, rows=3) == []


def test_item_translations_of_the_multitask_recipe_are_not_histories():
    """MQL4GRec on the item-level backbone writes a translation row as <bos> <task:a->b> a(i) b(i): both modalities'
    codes, one item; its prompt is what leaves it out."""
    tasks = MultitaskObjective().tasks(["text", "image"])
    codes, vocab, built = world("unimodal", ["text", "image"], tasks)
    flags = translation_prompts(vocab)
    assert {vocab.specials[i] for i in np.flatnonzero(flags)} == {
        f"<task:{translation_task('text', 'image')}>", f"<task:{translation_task('image', 'text')}>"}
    row = np.concatenate([[vocab.token("<bos>"), vocab.task_token(translation_task("text", "image"))],
                          built.modality_tokens["text"][0], built.modality_tokens["image"][0]])
    ids = torch.tensor(row)[None]
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}
    kinds = content_kinds(SimpleNamespace(layout=built, codes=codes))
    assert history_rows([batch], kinds, 2, torch.zeros_like(torch.from_numpy(flags)), rows=1)    # both modalities
    assert history_rows([batch], kinds, 2, torch.from_numpy(flags), rows=1) == []


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
