"""Generic CSV / Parquet reader on small fixture tables written here."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from mmgr.data.formats.generic import read_generic
from mmgr.errors import DataError

MISSING_IMAGE = "items whose image is missing or unreadable (image modality masked)"
NO_IMAGE = "items without an image (image modality masked)"


def write_csv(path: Path, rows: list[list[Any]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(rows)
    return path


def sequences(dataset) -> dict[str, list[str]]:
    ids = dataset.items["item_id"].to_pylist()
    users = dataset.sequences["user_id"].to_pylist()
    return {u: [ids[i] for i in seq] for u, seq in zip(users, dataset.item_sequences(), strict=True)}


def items_by_id(dataset) -> dict[str, dict[str, Any]]:
    return {row["item_id"]: row for row in dataset.items.to_pylist()}


def png(path: Path) -> Path:
    Image.new("RGB", (3, 3), "blue").save(path)
    return path


@pytest.fixture
def csv_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "shop"
    (folder / "pics").mkdir(parents=True)
    png(folder / "pics" / "i1.png")
    absolute = png(tmp_path / "elsewhere.png")
    write_csv(folder / "interactions.csv", [
        ["user_id", "item_id", "timestamp", "rating"],
        ["u1", "i2", "30", "5"], ["u1", "i1", "10", "4"], ["u2", "i3", "5", "1"],
        ["u1", "i4", "20", "3"], ["u2", "i1", "7", "2"],
    ])
    write_csv(folder / "items.csv", [
        ["item_id", "title", "description", "brand", "categories", "image", "price"],
        ["i4", "Four", "", "", "", str(absolute), "1"],
        ["i1", " One ", "first item", "Acme", "Home|Kitchen| |Home", "pics/i1.png", "2"],
        ["i2", "Two", "multi\nline", "", "Toys", "pics/missing.png", "3"],
        ["i3", "Three", "", "", "", "https://example.com/i3.jpg", "4"],
        ["i5", "never used", "", "", "", "", "5"],
    ])
    return folder


def test_generic_csv_folder(csv_folder: Path) -> None:
    builder = read_generic(csv_folder, None, None)
    assert builder.name == "shop"
    dataset = builder.build()
    stats = dataset.stats()
    assert (stats["users"], stats["items"], stats["interactions"], stats["catalog_items"]) == (2, 4, 5, 4)
    assert dataset.items["item_id"].to_pylist() == ["i4", "i1", "i2", "i3"]
    assert sequences(dataset) == {"u1": ["i1", "i4", "i2"], "u2": ["i3", "i1"]}
    assert dataset.sequences["timestamps"].to_pylist() == [[10, 20, 30], [5, 7]]
    items = items_by_id(dataset)
    one = items["i1"]
    assert (one["title"], one["description"], one["brand"]) == ("One", "first item", "Acme")
    assert items["i1"]["categories"] == ["Home", "Kitchen"] and items["i4"]["categories"] == []
    assert items["i2"]["description"] == "multi\nline"
    assert items["i1"]["image"] == str((csv_folder / "pics" / "i1.png").resolve())
    assert items["i4"]["image"] == str((csv_folder.parent / "elsewhere.png").resolve())
    assert items["i3"]["image"] == "https://example.com/i3.jpg"
    assert items["i2"]["image"] is None and not items["i2"]["has_image"]
    assert dataset.problems[MISSING_IMAGE]["count"] == 1
    assert "missing.png" in dataset.problems[MISSING_IMAGE]["examples"][0]
    assert dataset.problems["catalog items without interactions (dropped)"]["count"] == 1


def test_generic_image_column_relative_to_images_folder(csv_folder: Path, tmp_path: Path) -> None:
    images = tmp_path / "imgs"
    (images / "pics").mkdir(parents=True)
    png(images / "pics" / "missing.png")
    dataset = read_generic(csv_folder / "interactions.csv", None, images).build()
    items = items_by_id(dataset)
    assert items["i2"]["image"] == str((images / "pics" / "missing.png").resolve())
    assert items["i1"]["image"] is None  # pics/i1.png is not under the images folder
    assert dataset.problems[MISSING_IMAGE]["count"] == 1


def test_generic_images_by_stem_without_image_column(tmp_path: Path) -> None:
    write_csv(tmp_path / "events.csv", [["item_id", "user_id"], ["b", "u"], ["a", "u"]])
    items = write_csv(tmp_path / "catalog.csv", [["item_id", "title"], ["a", "A"], ["b", "B"]])
    folder = tmp_path / "images"
    folder.mkdir()
    png(folder / "a.png")
    dataset = read_generic(tmp_path / "events.csv", items, folder).build()
    assert sequences(dataset) == {"u": ["b", "a"]}  # no timestamp column: file order
    assert dataset.sequences["timestamps"].to_pylist() == [None]
    by_id = items_by_id(dataset)
    assert by_id["a"]["image"] == str((folder / "a.png").resolve()) and by_id["b"]["image"] is None
    assert dataset.problems[NO_IMAGE]["count"] == 1


def test_generic_parquet(tmp_path: Path) -> None:
    pq.write_table(pa.table({
        "user_id": ["u1", "u1", "u2"], "item_id": [2, 1, 1],
        "timestamp": pa.array([3_000, 1_000, 2_000], pa.timestamp("ms")),
    }), tmp_path / "interactions.parquet")
    pq.write_table(pa.table({
        "item_id": ["1", "2"], "title": ["one", None],
        "categories": pa.array([["a", "b", "a"], None], pa.list_(pa.string())),
        "description": [["x", "y"], []],
    }), tmp_path / "items.parquet")
    dataset = read_generic(tmp_path, None, None).build()
    assert sequences(dataset) == {"u1": ["1", "2"], "u2": ["1"]}
    assert dataset.sequences["timestamps"].to_pylist() == [[1, 3], [2]]
    items = items_by_id(dataset)
    assert items["1"]["categories"] == ["a", "b"] and items["1"]["description"] == "x y"
    assert items["2"]["title"] == "" and not items["2"]["has_text"]
    assert dataset.stats()["interactions"] == 3


def test_generic_parquet_pipe_categories_and_int_timestamps(tmp_path: Path) -> None:
    pq.write_table(pa.table({"user_id": ["u"], "item_id": ["1"], "timestamp": [5]}),
                   tmp_path / "interactions.parquet")
    pq.write_table(pa.table({"item_id": ["1"], "categories": ["x|y"]}), tmp_path / "items.parquet")
    dataset = read_generic(tmp_path, None, None).build()
    assert items_by_id(dataset)["1"]["categories"] == ["x", "y"]
    assert dataset.sequences["timestamps"].to_pylist() == [[5]]


# --- errors ---------------------------------------------------------------------------------------

def csv_pair(folder: Path, interactions: list[list[Any]], items: list[list[Any]] | None = None) -> Path:
    write_csv(folder / "interactions.csv", interactions)
    write_csv(folder / "items.csv", items or [["item_id"], ["i1"]])
    return folder


@pytest.mark.parametrize(("rows", "location", "field"), [
    ([["user", "item_id"], ["u", "i1"]], "interactions.csv:1:", "user_id"),
    ([["user_id", "item_id", "timestamp"], ["u", "i1", "1"], ["u", "i1", "soon"]], "interactions.csv:3:",
     "timestamp"),
    ([["user_id", "item_id", "timestamp"], ["u", "i1", "1"], ["u", "i1", ""]], "interactions.csv:3:",
     "timestamp"),
    ([["user_id", "item_id"], ["u", "i1"], ["", "i1"]], "interactions.csv:3:", "user_id"),
    ([["user_id", "item_id"], ["u", "i1"], ["u2", " "]], "interactions.csv:3:", "item_id"),
    ([["user_id", "item_id"], ["u", "i1"], ["u2"]], "interactions.csv:3:", "item_id"),
])
def test_generic_bad_interactions(tmp_path: Path, rows: list[list[Any]], location: str, field: str) -> None:
    csv_pair(tmp_path, rows)
    with pytest.raises(DataError) as info:
        read_generic(tmp_path, None, None)
    assert location in str(info.value) and f"field '{field}'" in str(info.value)


def test_generic_csv_line_numbers_count_physical_lines(tmp_path: Path) -> None:
    csv_pair(tmp_path, [["user_id", "item_id", "timestamp"], ["u", "i1", "1"], ["u", "i1", "2"]],
             [["item_id", "description"], ["i1", "two\nlines"], ["", "x"]])
    with pytest.raises(DataError) as info:
        read_generic(tmp_path, None, None)
    assert "items.csv:4:" in str(info.value) and "field 'item_id'" in str(info.value)


@pytest.mark.parametrize(("items", "location", "field"), [
    ([["id", "title"], ["i1", "x"]], "items.csv:1:", "item_id"),
    ([["item_id", "title"], ["i1", "x"], ["i1", "again"]], "items.csv:3:", "item_id"),
])
def test_generic_bad_items(tmp_path: Path, items: list[list[Any]], location: str, field: str) -> None:
    csv_pair(tmp_path, [["user_id", "item_id"], ["u", "i1"]], items)
    with pytest.raises(DataError) as info:
        read_generic(tmp_path, None, None)
    assert location in str(info.value) and f"field '{field}'" in str(info.value)


def test_generic_parquet_errors_name_the_row(tmp_path: Path) -> None:
    write_csv(tmp_path / "items.csv", [["item_id"], ["i1"]])
    pq.write_table(pa.table({"user_id": ["u", "u"], "item_id": ["i1", "i1"], "timestamp": [1.0, 2.5]}),
                   tmp_path / "interactions.parquet")
    with pytest.raises(DataError) as info:
        read_generic(tmp_path, None, None)
    message = str(info.value)
    assert "interactions.parquet:2:" in message and "row 2" in message and "field 'timestamp'" in message
    pq.write_table(pa.table({"user_id": ["u"], "item": ["i1"]}), tmp_path / "interactions.parquet")
    with pytest.raises(DataError) as info:
        read_generic(tmp_path, None, None)
    assert "interactions.parquet:1:" in str(info.value) and "field 'item_id'" in str(info.value)


def test_generic_missing_tables(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no interactions table"):
        read_generic(tmp_path, None, None)
    write_csv(tmp_path / "interactions.csv", [["user_id", "item_id"], ["u", "i"]])
    with pytest.raises(DataError, match="no items table"):
        read_generic(tmp_path, None, None)
    write_csv(tmp_path / "items.csv", [])
    with pytest.raises(DataError, match="items.csv:1: empty file"):
        read_generic(tmp_path, None, None)
    (tmp_path / "items.txt").write_text("item_id\n")
    with pytest.raises(DataError, match="unsupported table format"):
        read_generic(tmp_path, tmp_path / "items.txt", None)
