"""Readers feed items and interactions here; `build` orders, filters and counts what it drops."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from mmgr.data.dataset import Dataset
from mmgr.data.filters import drop_repeats, kcore_filter
from mmgr.data.images import check_images
from mmgr.data.problems import Problems
from mmgr.errors import DataError


@dataclass
class ItemRecord:
    item_id: str
    title: str = ""
    description: str = ""
    brand: str = ""
    categories: list[str] = field(default_factory=list)
    image: str | None = None
    source_index: str | None = None  # the source file's own index when `item_id` comes from a published id map


UNUSED_ITEMS = "catalog items without interactions (dropped)"


class DatasetBuilder:
    """Accumulates a catalog and per-user interaction lists, then builds a `Dataset`.

    Item order is insertion order (readers insert in the source's id order, so published SID tables align).
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.source: Path | str | None = None  # the interactions file, named when nothing usable is left in it
        self.problems = Problems()
        self._items: dict[str, ItemRecord] = {}
        self._where: dict[str, tuple[Path | str, int | None]] = {}
        self._events: dict[str, list[tuple[int | None, int, str]]] = {}  # user -> [(timestamp, order, item)]
        self._user_index: dict[str, str] = {}  # user -> the source's own index (when an id map named the user)
        self._order = 0

    def add_item(self, record: ItemRecord, path: Path | str, line: int | None = None,
                 field: str = "item_id") -> None:
        """Add a catalog entry; a second entry with the same id is an error naming both places."""
        if not record.item_id:
            raise DataError("empty item id", path, line, field)
        if record.item_id in self._items:
            first_path, first_line = self._where[record.item_id]
            raise DataError(f"duplicate item id {record.item_id!r} (first seen at {first_path}:{first_line})",
                            path, line, field)
        self._items[record.item_id] = record
        self._where[record.item_id] = (path, line)

    def add_user(self, user_id: str, path: Path | str, line: int | None = None,
                 source_index: str | None = None) -> None:
        """Declare a user (so an empty history is counted, not lost); duplicates are an error."""
        if user_id in self._events:
            raise DataError(f"duplicate user id {user_id!r}", path, line, "user_id")
        self._events[user_id] = []
        if source_index is not None:
            self._user_index[user_id] = source_index

    def add_interaction(self, user_id: str, item_id: str, timestamp: int | None = None) -> None:
        self._events.setdefault(user_id, []).append((timestamp, self._order, item_id))
        self._order += 1

    def build(self, kcore: int = 0, dedup: bool = False) -> Dataset:
        """Chronological order, optional dedup and k-core, drop empty users and never-seen items, check images."""
        sequences = self._chronological()
        if dedup:
            sequences = drop_repeats(sequences, self.problems)
        empty = [user for user, seq in sequences.items() if not seq]
        for user in empty:
            del sequences[user]
        if empty:
            self.problems.add("users with an empty history (dropped)", f"user {empty[0]!r}", count=len(empty))
        if kcore:
            sequences = kcore_filter(sequences, kcore, self.problems)
        if not sequences:
            raise DataError("no users left after reading and filtering (check the input and "
                            "data.kcore)", self.source or self.name)
        items = self._catalog(sequences)
        check_images(items, self.problems)
        if not any(r.title or r.description or r.brand or r.categories for r in items):
            self.problems.add("no item has text (the source gives none; text SIDs can come from a table)",
                              count=len(items))
        return Dataset(self.name, _items_table(items), _sequences_table(sequences, items, self._user_index),
                       self.problems.as_dict())

    def _chronological(self) -> dict[str, list[tuple[int | None, str]]]:
        out = {}
        for user, events in self._events.items():
            timed = all(ts is not None for ts, _, _ in events)
            events.sort(key=(lambda e: (e[0], e[1])) if timed else (lambda e: e[1]))  # ties: file order
            out[user] = [(ts, item) for ts, _, item in events]
        return out

    def _catalog(self, sequences: dict[str, list[tuple[int | None, str]]]) -> list[ItemRecord]:
        used = {item for seq in sequences.values() for _, item in seq}
        missing = [item for item in dict.fromkeys(i for s in sequences.values() for _, i in s)
                   if item not in self._items]
        if missing:
            self.problems.add("items with interactions but no metadata (kept, text missing)",
                              f"item {missing[0]!r}", count=len(missing))
        unused = [item for item in self._items if item not in used]
        if unused:
            self.problems.add(UNUSED_ITEMS, f"item {unused[0]!r}",
                              count=len(unused))
        return [r for r in self._items.values() if r.item_id in used] + [ItemRecord(m) for m in missing]


def _items_table(items: list[ItemRecord]) -> pa.Table:
    has_text = [bool(r.title or r.description or r.brand or r.categories) for r in items]
    return pa.table({
        "item_id": [r.item_id for r in items],
        "title": [r.title for r in items],
        "description": [r.description for r in items],
        "brand": [r.brand for r in items],
        "categories": [list(r.categories) for r in items],
        "image": [r.image for r in items],
        "has_text": has_text,
        "has_image": [r.image is not None for r in items],
        "source_index": [r.source_index for r in items],
    })


def _sequences_table(sequences: dict[str, list[tuple[int | None, str]]], items: list[ItemRecord],
                     user_index: dict[str, str]) -> pa.Table:
    index = {r.item_id: i for i, r in enumerate(items)}
    timed = all(ts is not None for seq in sequences.values() for ts, _ in seq)
    return pa.table({
        "user_id": list(sequences),
        "items": [[index[item] for _, item in seq] for seq in sequences.values()],
        "timestamps": [[ts for ts, _ in seq] if timed else None for seq in sequences.values()],
        "source_index": pa.array([user_index.get(user) for user in sequences], pa.string()),
    })
