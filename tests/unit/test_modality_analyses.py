"""MGR's modality analyses on hand-made codes and ranked lists whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from mmgr.evaluation.modality import by_user_kind, code_ami, correspondence, topk_overlap


def test_ami_is_one_for_a_relabelling_and_near_zero_for_independent_codes():
    rng = np.random.default_rng(0)
    text = rng.integers(0, 8, size=(2000, 2))
    relabelled = (text + 3) % 8                                        # same partition, other code names
    independent = rng.integers(0, 8, size=(2000, 2))
    assert code_ami(relabelled, text) == pytest.approx([1.0, 1.0])
    assert max(abs(v) for v in code_ami(independent, text)) < 0.02
    fused_follows_text_first_level = np.stack([text[:, 0], independent[:, 1]], axis=1)
    first, second = code_ami(fused_follows_text_first_level, text)
    assert first == pytest.approx(1.0) and second < 0.6                 # level 2 = prefixes of two codes


def test_topk_overlap():
    assert topk_overlap([[1, 2, 3, 4]], [[4, 3, 9, 8]], k=4) == 0.5
    assert topk_overlap([[1, 2], [5, 6]], [[1, 2], [7, 8]], k=2) == 0.5


def test_correspondence_counts_each_modality_part():
    parts = {"text": np.array([[0, 0], [0, 1], [1, 0], [1, 1]]), "image": np.array([[5, 5], [6, 6], [5, 5], [7, 7]])}
    targets = np.array([0, 0, 0, 0])
    top1 = np.array([0, 1, 2, -1])      # right; text part wrong but image wrong; image right, text wrong; nothing
    out = correspondence(top1, targets, parts)
    assert out == {"text_right_image_wrong": 0.0, "image_right_text_wrong": 0.25, "both_right": 0.25,
                   "both_wrong": 0.5}
    parts["text"][1] = [0, 0]                                          # item 1 now shares the target's text SID
    assert correspondence(top1, targets, parts)["text_right_image_wrong"] == 0.25


def test_breakdown_by_user_kind():
    rows = {"user_id": ["a", "b", "c"], "hr@10": [1.0, 0.0, 1.0], "ndcg@10": [0.5, 0.0, 1.0]}
    out = by_user_kind(rows, {"a": "text", "b": "text", "c": "image"})
    assert out == {"image": {"users": 1, "hr@10": 1.0, "ndcg@10": 1.0},
                   "text": {"users": 2, "hr@10": 0.5, "ndcg@10": 0.25}}
