"""The in-memory dataset every stage reads: an item catalog and chronological user sequences.

Tables (Parquet in a run directory):
- items:     item_id str, title str, description str, brand str, categories list<str>, image str|null,
             has_text bool, has_image bool, source_index str|null. Row i is item index i everywhere else in mmgr.
- sequences: user_id str, items list<int32> (item indices, oldest first), timestamps list<int64>|null
             (seconds since the epoch; null where the source gives only the order), source_index str|null.

`source_index` is the source file's own index of the item / user when `item_id` / `user_id` is the real id from a
published id map (P5 `datamaps.json`, `X.item2id`, `X.user2id`); null otherwise. Tables written before the column
existed load with it null, and an all-null column does not enter the fingerprint (so theirs is unchanged).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mmgr.errors import DataError
from mmgr.io import write_parquet_atomic

ITEM_SCHEMA = pa.schema([
    ("item_id", pa.string()), ("title", pa.string()), ("description", pa.string()), ("brand", pa.string()),
    ("categories", pa.list_(pa.string())), ("image", pa.string()), ("has_text", pa.bool_()),
    ("has_image", pa.bool_()), ("source_index", pa.string()),
])
SEQUENCE_SCHEMA = pa.schema([
    ("user_id", pa.string()), ("items", pa.list_(pa.int32())), ("timestamps", pa.list_(pa.int64())),
    ("source_index", pa.string()),
])
SOURCE_INDEX = "source_index"

ITEMS_FILE, SEQUENCES_FILE = "items.parquet", "sequences.parquet"


@dataclass
class Dataset:
    """Item catalog + user sequences, plus what import dropped (`problems`, category -> count/examples)."""

    name: str
    items: pa.Table
    sequences: pa.Table
    problems: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.items = _with_source_index(self.items).cast(ITEM_SCHEMA)
        self.sequences = _with_source_index(self.sequences).cast(SEQUENCE_SCHEMA)

    @property
    def num_items(self) -> int:
        return self.items.num_rows

    @property
    def num_users(self) -> int:
        return self.sequences.num_rows

    @property
    def num_interactions(self) -> int:
        return int(pc.sum(pc.list_value_length(self.sequences["items"])).as_py() or 0)

    def item_sequences(self) -> list[np.ndarray]:
        """One int32 array of item indices per user, oldest first."""
        flat = self.sequences["items"].combine_chunks()
        values = flat.values.to_numpy(zero_copy_only=False).astype(np.int32)
        offsets = flat.offsets.to_numpy()
        return [values[offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1)]

    def stats(self) -> dict[str, Any]:
        lengths = pc.list_value_length(self.sequences["items"]).to_numpy(zero_copy_only=False)
        interacted = np.unique(np.concatenate(self.item_sequences())) if self.num_users else np.array([])
        n_inter = int(lengths.sum())
        return {
            "users": self.num_users,
            "items": int(interacted.size),
            "interactions": n_inter,
            "catalog_items": self.num_items,
            "density": n_inter / max(1, self.num_users * max(1, self.num_items)),
            "sequence_length": {
                "min": int(lengths.min()) if lengths.size else 0,
                "mean": float(lengths.mean()) if lengths.size else 0.0,
                "median": float(np.median(lengths)) if lengths.size else 0.0,
                "max": int(lengths.max()) if lengths.size else 0,
            },
            "items_with_text": int(pc.sum(self.items["has_text"]).as_py() or 0),
            "items_with_image": int(pc.sum(self.items["has_image"]).as_py() or 0),
        }

    def fingerprint(self) -> str:
        """sha256 of the canonical content (item ids, text, image refs, sequences), independent of file layout."""
        digest = hashlib.sha256()
        for table in (self.items.drop_columns(["has_text", "has_image"]), self.sequences):
            if table[SOURCE_INDEX].null_count == table.num_rows:
                table = table.drop_columns([SOURCE_INDEX])
            for column in table.columns:
                for chunk in column.chunks:
                    digest.update(repr(chunk.to_pylist()).encode())
        return digest.hexdigest()

    def save(self, folder: Path) -> dict[str, str]:
        """Write both tables atomically; returns their file names."""
        write_parquet_atomic(Path(folder) / ITEMS_FILE, self.items)
        write_parquet_atomic(Path(folder) / SEQUENCES_FILE, self.sequences)
        return {"items": ITEMS_FILE, "sequences": SEQUENCES_FILE}

    def source_indices(self, table: str = "items") -> list[str] | None:
        """The source's own index per item (or user) row, when the ids came from a published id map."""
        column = (self.items if table == "items" else self.sequences)[SOURCE_INDEX]
        return None if column.null_count == len(column) else column.to_pylist()

    @classmethod
    def load(cls, folder: Path, name: str = "", problems: dict[str, Any] | None = None) -> Dataset:
        folder = Path(folder)
        paths = [folder / ITEMS_FILE, folder / SEQUENCES_FILE]
        for path in paths:
            if not path.exists():
                raise DataError("missing; run `mmgr data import` first", path)
        return cls(name or folder.name, pq.read_table(paths[0]), pq.read_table(paths[1]), problems or {})


def _with_source_index(table: pa.Table) -> pa.Table:
    """`table` with a `source_index` column (all null when it has none, as tables written before it existed)."""
    if SOURCE_INDEX in table.column_names:
        return table
    return table.append_column(SOURCE_INDEX, pa.nulls(table.num_rows, pa.string()))
