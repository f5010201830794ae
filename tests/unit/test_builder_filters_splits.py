"""Chronological ordering, dedup, k-core, catalog pruning and the leave-one-out split."""

import numpy as np
import pytest

from mmgr.data.builder import DatasetBuilder, ItemRecord
from mmgr.data.splits import leave_one_out
from mmgr.errors import DataError


def builder_from(events, items=()):
    builder = DatasetBuilder("toy")
    for item in items:
        builder.add_item(ItemRecord(item, title=item.upper()), "items.csv", 2)
    for user, item, ts in events:
        builder.add_interaction(user, item, ts)
    return builder


def test_orders_by_timestamp_with_ties_in_file_order():
    dataset = builder_from([("u", "b", 5), ("u", "a", 1), ("u", "c", 5)], "abc").build()
    assert [s.tolist() for s in dataset.item_sequences()] == [[0, 1, 2]]
    assert dataset.sequences["timestamps"].to_pylist() == [[1, 5, 5]]


def test_dedup_keeps_first_and_counts():
    dataset = builder_from([("u", "a", 1), ("u", "b", 2), ("u", "a", 3)], "ab").build(dedup=True)
    assert dataset.item_sequences()[0].tolist() == [0, 1]
    assert dataset.problems["repeated (user, item) interactions (dropped by data.dedup)"]["count"] == 1


def test_kcore_is_iterative_and_counted():
    # item z has 1 interaction -> dropped; then user v has 1 left -> dropped; then item y falls to 1 -> dropped.
    events = [("u", "x", 1), ("u", "w", 2), ("t", "x", 1), ("t", "w", 2), ("v", "z", 1), ("v", "y", 2),
              ("t", "y", 3)]
    dataset = builder_from(events, "wxyz").build(kcore=2)
    assert sorted(dataset.items["item_id"].to_pylist()) == ["w", "x"]
    assert dataset.num_users == 2
    dropped = {k: v["count"] for k, v in dataset.problems.items()}
    assert dropped["users dropped by 2-core filter"] == 1
    assert dropped["items dropped by 2-core filter"] == 2
    assert dropped["interactions dropped by 2-core filter"] == 3
    assert dropped["catalog items without interactions (dropped)"] == 2


def test_empty_after_filtering_is_an_error():
    with pytest.raises(DataError, match="no users left"):
        builder_from([("u", "a", 1)], "a").build(kcore=5)


def test_unknown_items_are_kept_without_text_and_counted():
    dataset = builder_from([("u", "a", 1), ("u", "q", 2)], "a").build()
    assert dataset.items.to_pydict()["has_text"] == [True, False]
    assert dataset.problems["items with interactions but no metadata (kept, text missing)"]["count"] == 1


def test_duplicate_item_names_both_places():
    builder = DatasetBuilder("toy")
    builder.add_item(ItemRecord("a"), "items.csv", 2)
    with pytest.raises(DataError, match=r"items.csv:9: field 'item_id': duplicate item id 'a' .*items.csv:2"):
        builder.add_item(ItemRecord("a"), "items.csv", 9)


def test_fingerprint_is_content_based():
    one = builder_from([("u", "a", 1), ("u", "b", 2)], "ab").build()
    same = builder_from([("u", "a", 1), ("u", "b", 2)], "ab").build()
    other = builder_from([("u", "b", 1), ("u", "a", 2)], "ab").build()
    assert one.fingerprint() == same.fingerprint() != other.fingerprint()


def test_leave_one_out_targets_and_truncation():
    sequences = [np.arange(10, dtype=np.int32), np.array([3, 4], dtype=np.int32), np.array([5, 6, 7])]
    split = leave_one_out(sequences, max_history=3)
    assert split.train[0].tolist() == list(range(8)) and split.train[1].tolist() == [3, 4]
    assert split.test.users.tolist() == [0, 2] and split.test.targets.tolist() == [9, 7]
    assert split.valid.targets.tolist() == [8, 6]
    assert split.test.histories[0].tolist() == [6, 7, 8]      # 3 most recent before the test item
    assert split.valid.histories[0].tolist() == [5, 6, 7]
    assert split.test.histories[1].tolist() == [5, 6]
    assert split.summary()["users_too_short_to_evaluate"] == 1
