"""Each ranked list alone against their fusion (`evaluation.list_fusion`), computed by hand on three users, and its
report table."""

from __future__ import annotations

import numpy as np
import pytest

from mmgr.config import DecodingConfig
from mmgr.evaluation.list_fusion import compare_lists, in_every_list
from mmgr.report.analyses import analysis_sections


def ranked(*rows: list[tuple[int, float]]) -> tuple[np.ndarray, np.ndarray]:
    """(items, scores) of width 10, padded with -1 / -inf."""
    items, scores = np.full((len(rows), 10), -1), np.full((len(rows), 10), -np.inf)
    for user, row in enumerate(rows):
        items[user, :len(row)] = [item for item, _ in row]
        scores[user, :len(row)] = [score for _, score in row]
    return items, scores


def three_users() -> dict:
    # user 0 (target 1): both lists hold 1 and 5 -> fused [1, 5] (1: -0.2 + 1, 5: -0.35 + 1); text ranks 1 first,
    # image second. User 1 (target 2): no item in both -> fused by score [7, 8, 2, 9], target third; image first.
    # User 2 (target 3): found nowhere.
    text = ranked([(1, -0.1), (5, -0.5)], [(7, -0.1), (8, -0.2)], [(4, -0.1)])
    image = ranked([(5, -0.2), (1, -0.3)], [(2, -0.3), (9, -0.4)], [(6, -0.1)])
    return compare_lists({"text": text, "image": image}, np.array([1, 2, 3]),
                         DecodingConfig(beam_size=10, top_k=10, fusion="mean-bonus", fusion_bonus=1.0), resamples=200)


def test_each_list_alone_and_their_fusion_by_hand():
    out = three_users()
    third = 1 / np.log2(3)                                   # NDCG of a hit at rank 1 (0-based)
    assert out["rows"] == 3 and out["rule"] == "mean-bonus"
    assert out["fused"]["hr@10"] == pytest.approx(2 / 3) and out["fused"]["ndcg@10"] == pytest.approx(1.5 / 3)
    assert out["alone"]["text"]["hr@10"] == pytest.approx(1 / 3) == out["alone"]["text"]["ndcg@10"]
    assert out["alone"]["image"]["hr@10"] == pytest.approx(2 / 3)
    assert out["alone"]["image"]["ndcg@10"] == pytest.approx((third + 1) / 3)
    assert out["fused_vs_alone"]["text"]["mean_difference"] == pytest.approx(0.5 / 3)
    assert out["fused_vs_alone"]["image"]["mean_difference"] == pytest.approx((1 - third - 0.5) / 3)
    assert out["any_list_hr@10"] == pytest.approx(2 / 3)
    assert out["in_every_list"] == pytest.approx(2 / 8)      # user 0's two items of the eight fused


def test_in_every_list_leaves_padding_out():
    fused = np.array([[3, -1, -1], [4, 5, -1]])
    assert in_every_list(fused, [np.array([[3, 9], [5, 9]]), np.array([[3, 4], [5, 4]])]) == pytest.approx(2 / 3)
    assert in_every_list(np.full((1, 2), -1), [np.array([[1, 2]])]) == 0.0


def test_the_report_tables_each_list_beside_the_fusion():
    sections = {key: table for key, _, table in analysis_sections({"lists": {"syngr": three_users()}})}
    header, rows = sections["lists"]
    assert header[3:6] == ["fused", "text alone", "image alone"] and rows[0][:3] == ["syngr", "mean-bonus (+1)", "3"]
    assert rows[0][3] == "0.667 / 0.500" and rows[0][6].startswith("+0.1667 [")
