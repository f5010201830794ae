"""benchmarks/cold_start.py's pure logic: hold-out by first-interaction time, deleting the held-out items' events,
the content-similarity scorer and the metrics per subset of events."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from mmgr.data.dataset import Dataset

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def cold(monkeypatch):
    """benchmarks/cold_start.py, loaded by path (its folder stays off sys.path for other tests)."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))            # it imports its siblings (`common`, `t5_rows`)
    spec = importlib.util.spec_from_file_location("benchmarks_cold_start", ROOT / "benchmarks" / "cold_start.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)              # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


# items 0..4; first seen at: 0 -> 10, 1 -> 20, 2 -> 50, 3 -> 40, 4 -> 50 (tied with 2)
SEQUENCES = [np.array([0, 1, 3], dtype=np.int32), np.array([1, 2, 4], dtype=np.int32), np.array([4], dtype=np.int32)]
TIMES = [np.array([10, 20, 40]), np.array([30, 50, 50]), np.array([60])]


def test_first_interaction_time_is_the_earliest_event_on_the_item(cold):
    first = cold.first_interaction_times(SEQUENCES, TIMES, 6)
    assert first[:5].tolist() == [10, 20, 50, 40, 50]
    assert first[5] == np.iinfo(np.int64).max                      # nobody touched it


def test_the_latest_first_seen_items_are_held_out_oldest_first(cold):
    first = cold.first_interaction_times(SEQUENCES, TIMES, 5)
    three = cold.held_out_items(first, 0.6, seed=0)
    assert sorted(three.tolist()) == [2, 3, 4] and three[0] == 3     # 3 (t=40) before the tied pair (t=50)
    one = {tuple(cold.held_out_items(first, 0.2, seed=s).tolist()) for s in range(20)}
    assert one == {(2,), (4,)}                                     # the seed breaks the tie, either way
    assert cold.held_out_items(first, 0.2, seed=3).tolist() == cold.held_out_items(first, 0.2, seed=3).tolist()
    assert cold.held_out_items(first, 0.01, seed=0).size == 1      # at least one item
    with pytest.raises(ValueError):
        cold.held_out_items(first, 1.0, seed=0)


def test_held_out_events_are_deleted_and_the_rest_renumbered(cold):
    reduced = cold.drop_items(SEQUENCES, np.array([4, 1]), 5)
    assert reduced.kept_items.tolist() == [0, 2, 3]                # new index = position: 0 -> 0, 2 -> 1, 3 -> 2
    assert [s.tolist() for s in reduced.sequences] == [[0, 2], [1]]
    assert reduced.users.tolist() == [0, 1]                        # user 2 had only item 4
    assert [m.tolist() for m in reduced.keep] == [[True, False, True], [False, True, False]]
    assert (reduced.dropped_events, reduced.dropped_users) == (4, 1)


def test_the_reduced_dataset_keeps_timestamps_of_kept_events_only(cold):
    import pyarrow as pa

    items = pa.table({"item_id": [f"i{i}" for i in range(5)], "title": list("abcde"), "has_text": [True] * 5,
                      "has_image": [False] * 5})
    sequences = pa.table({"user_id": ["u0", "u1", "u2"], "items": [s.tolist() for s in SEQUENCES],
                          "timestamps": [t.tolist() for t in TIMES]})
    for name, kind in (("description", pa.string()), ("brand", pa.string()), ("image", pa.string())):
        items = items.append_column(name, pa.nulls(5, kind))
    items = items.append_column("categories", pa.nulls(5, pa.list_(pa.string())))
    data = Dataset("toy", items.select(["item_id", "title", "description", "brand", "categories", "image",
                                        "has_text", "has_image"]), sequences)
    reduced = cold.reduced_dataset(data, cold.drop_items(SEQUENCES, np.array([4, 1]), 5), ["i4", "i1"])
    assert reduced.items["item_id"].to_pylist() == ["i0", "i2", "i3"]
    assert reduced.sequences["user_id"].to_pylist() == ["u0", "u1"]
    assert reduced.sequences["timestamps"].to_pylist() == [[10, 40], [50]]
    assert reduced.problems["cold_start_held_out"]["events_dropped"] == 4


def test_content_scores_rank_by_mean_cosine_over_the_modalities_an_item_has(cold):
    text = np.array([[1, 0], [1, 0], [0.8, 0.6], [0, 1], [-1, 0]], dtype=np.float32)
    image = np.array([[0, 2], [0, 1], [1, 0], [0, 0], [0, 1]], dtype=np.float32)
    features = {"text": (text, np.zeros(5, dtype=bool)), "image": (image, np.array([0, 0, 0, 1, 0], dtype=bool))}
    scores = cold.content_scores(features, np.array([0]))
    assert scores[0] == -np.inf                                    # a history item
    assert scores[1:].tolist() == pytest.approx([1.0, 0.4, 0.0, 0.0])   # item 3: text only; 4: (-1 + 1) / 2
    assert cold.top_items(scores, 6).tolist() == [1, 2, 3, 4, -1, -1]


def test_content_scores_skip_a_modality_no_history_item_has(cold):
    text = np.eye(3, dtype=np.float32)
    image = np.array([[0, 0], [1, 0], [1, 0]], dtype=np.float32)
    features = {"text": (text, np.zeros(3, dtype=bool)), "image": (image, np.array([1, 0, 0], dtype=bool))}
    scores = cold.content_scores(features, np.array([0]))            # the history has no image: text alone
    assert scores.tolist() == [-np.inf, 0.0, 0.0]


def test_metrics_per_subset_of_events(cold):
    ranked = np.array([[5] + [-1] * 9, [1, 7] + [-1] * 8, [2] * 1 + [-1] * 9])
    targets = np.array([5, 7, 9])
    out = cold.subset_metrics(ranked, targets, {"a": np.array([True, True, False]), "none": np.zeros(3, bool)})
    assert out["a"]["hr@10"] == 1.0 and out["a"]["events"] == 2
    assert out["a"]["ndcg@10"] == pytest.approx((1 + 1 / np.log2(3)) / 2)
    assert out["none"] == {"hr@10": None, "ndcg@10": None, "mrr@10": None, "events": 0}


def test_coverage_counts_held_out_slots_and_short_lists(cold):
    ranked = np.array([[1, 2, 3], [4, 5, -1]])
    assert cold.coverage(ranked, np.array([2, 5])) == {"held_out_share_of_slots": 0.4,
                                                       "lists_with_a_held_out_item": 2, "short_lists": 1}
