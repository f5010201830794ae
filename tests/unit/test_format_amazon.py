"""Amazon 2014 / 2023 raw readers on small fixture files written here."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from mmgr.data.formats.amazon import read_amazon2014, read_amazon2023
from mmgr.errors import DataError

URL = "http://ecx.images-amazon.com/images/I/{}.jpg"


def write_lines(path: Path, lines: list[str]) -> Path:
    text = "".join(line + "\n" for line in lines)
    if path.suffix == ".gz":
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            fh.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def review14(user: str, item: str, ts: int) -> str:
    return json.dumps({"reviewerID": user, "asin": item, "unixReviewTime": ts, "overall": 5.0,
                       "reviewText": "fine"})


def meta14(asin: str, **fields: Any) -> str:
    return repr({"asin": asin, **fields})  # the 2014 meta is Python literals, not JSON


def sequences(dataset) -> dict[str, list[str]]:
    ids = dataset.items["item_id"].to_pylist()
    users = dataset.sequences["user_id"].to_pylist()
    return {u: [ids[i] for i in seq] for u, seq in zip(users, dataset.item_sequences(), strict=True)}


def items_by_id(dataset) -> dict[str, dict[str, Any]]:
    return {row["item_id"]: row for row in dataset.items.to_pylist()}


@pytest.fixture
def beauty14(tmp_path: Path) -> Path:
    write_lines(tmp_path / "reviews_Beauty_5.json.gz", [
        review14("U1", "A", 300), review14("U1", "B", 100), review14("U2", "B", 50),
        review14("U1", "C", 200), review14("U2", "C", 60),
    ])
    write_lines(tmp_path / "meta_Beauty.json.gz", [
        meta14("C", title="Cream", categories=[["Beauty", "Skin Care"], ["Beauty", "Face"]],
               imUrl=URL.format("C"), salesRank={"Beauty": 3}),
        meta14("A", title=" Apple Soap ", description="Smells 'nice'", brand="Acme",
               categories=[["Beauty"]], imUrl=URL.format("A"), related={"also_bought": ["B"]}),
        meta14("D", title="never reviewed"),
        meta14("B", title="Brush", categories="not-a-list"),
    ])
    return tmp_path


def test_amazon2014_catalog_order_and_counts(beauty14: Path) -> None:
    builder = read_amazon2014(beauty14, None, None)
    assert builder.name == "Beauty"
    dataset = builder.build()
    stats = dataset.stats()
    assert (stats["users"], stats["items"], stats["interactions"], stats["catalog_items"]) == (2, 3, 5, 3)
    assert dataset.items["item_id"].to_pylist() == ["C", "A", "B"]  # meta order, D dropped
    assert sequences(dataset) == {"U1": ["B", "C", "A"], "U2": ["B", "C"]}
    assert dataset.sequences["timestamps"].to_pylist() == [[100, 200, 300], [50, 60]]
    items = items_by_id(dataset)
    assert items["A"]["title"] == "Apple Soap" and items["A"]["description"] == "Smells 'nice'"
    assert items["A"]["brand"] == "Acme" and items["A"]["categories"] == ["Beauty"]
    assert items["C"]["categories"] == ["Beauty", "Skin Care", "Face"]
    assert items["A"]["image"] == URL.format("A") and items["B"]["image"] is None
    assert items["B"]["categories"] == [] and items["B"]["title"] == "Brush"
    problems = dataset.problems
    assert problems["catalog items without interactions (dropped)"]["count"] == 1
    bad = problems["meta fields with an unexpected type or value (field ignored)"]
    assert bad["count"] == 1 and "field 'categories'" in bad["examples"][0]


def test_amazon2014_accepts_either_file_and_plain_json(tmp_path: Path) -> None:
    write_lines(tmp_path / "reviews_Toys_5.json", [review14("U1", "A", 2), "", review14("U1", "B", 1)])
    meta = write_lines(tmp_path / "meta_Toys.json", [meta14("A", title="a"), meta14("B", title="b")])
    for path in (tmp_path, tmp_path / "reviews_Toys_5.json", meta):
        builder = read_amazon2014(path, None, None)
        dataset = builder.build()
        assert sequences(dataset) == {"U1": ["B", "A"]}
        assert dataset.problems["blank lines (skipped)"]["count"] == 1


def test_amazon2014_local_images(beauty14: Path, tmp_path: Path) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    Image.new("RGB", (4, 4), "red").save(folder / "A.png")
    (folder / "C.jpg").write_bytes(b"not an image")
    dataset = read_amazon2014(beauty14, None, folder).build()
    items = items_by_id(dataset)
    assert items["A"]["image"] == str((folder / "A.png").resolve()) and items["A"]["has_image"]
    assert items["B"]["image"] is None and items["C"]["image"] is None and not items["C"]["has_image"]
    problems = dataset.problems
    assert problems["items whose image is missing or unreadable (image modality masked)"]["count"] == 1
    assert problems["items without an image (image modality masked)"]["count"] == 1
    assert dataset.stats()["items_with_image"] == 1


@pytest.mark.parametrize(("line", "field"), [
    ('{"reviewerID": "U2", "asin": ', None),
    ('{"asin": "B", "unixReviewTime": 5}', "reviewerID"),
    ('{"reviewerID": "U2", "unixReviewTime": 5}', "asin"),
    ('{"reviewerID": "U2", "asin": "B"}', "unixReviewTime"),
    ('{"reviewerID": "U2", "asin": "B", "unixReviewTime": "yesterday"}', "unixReviewTime"),
    ('["U2", "B", 5]', None),
])
def test_amazon2014_bad_review_line(tmp_path: Path, line: str, field: str | None) -> None:
    write_lines(tmp_path / "reviews_Toys_5.json.gz", [review14("U1", "A", 1), line])
    write_lines(tmp_path / "meta_Toys.json.gz", [meta14("A")])
    with pytest.raises(DataError) as info:
        read_amazon2014(tmp_path, None, None)
    assert "reviews_Toys_5.json.gz:2:" in str(info.value)
    if field:
        assert f"field '{field}'" in str(info.value)


@pytest.mark.parametrize(("line", "field"), [
    ("{'asin': 'B', 'title': 'oops'", None),
    ("{'asin': 'B', 'title': __import__('os').getcwd()}", None),
    ("{'title': 'no id'}", "asin"),
    (meta14("A", title="twice"), "duplicate"),
])
def test_amazon2014_bad_meta_line(tmp_path: Path, line: str, field: str | None) -> None:
    write_lines(tmp_path / "reviews_Toys_5.json.gz", [review14("U1", "A", 1), review14("U1", "B", 2)])
    write_lines(tmp_path / "meta_Toys.json.gz", [meta14("A"), line])
    with pytest.raises(DataError) as info:
        read_amazon2014(tmp_path, None, None)
    assert "meta_Toys.json.gz:2:" in str(info.value)
    if field == "duplicate":
        assert "duplicate item id 'A'" in str(info.value)
    elif field:
        assert f"field '{field}'" in str(info.value)


def test_amazon2014_missing_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no Amazon 2014 reviews file"):
        read_amazon2014(tmp_path, None, None)
    write_lines(tmp_path / "reviews_Toys_5.json.gz", [review14("U1", "A", 1)])
    with pytest.raises(DataError, match="meta_Toys.json.gz"):
        read_amazon2014(tmp_path, None, None)
    write_lines(tmp_path / "reviews_Games_5.json.gz", [review14("U1", "A", 1)])
    with pytest.raises(DataError, match="several reviews files"):
        read_amazon2014(tmp_path, None, None)


def test_amazon2014_truncated_gzip(tmp_path: Path) -> None:
    reviews = write_lines(tmp_path / "reviews_Toys_5.json.gz", [review14("U1", "A", i) for i in range(200)])
    reviews.write_bytes(reviews.read_bytes()[:-30])
    write_lines(tmp_path / "meta_Toys.json.gz", [meta14("A")])
    with pytest.raises(DataError, match="reviews_Toys_5.json.gz:.*cannot read"):
        read_amazon2014(tmp_path, None, None)


# --- 2023 -----------------------------------------------------------------------------------------

def review23(user: str, item: str, ts: int) -> str:
    return json.dumps({"rating": 4.0, "title": "ok", "text": "t", "images": [], "asin": item + "-v",
                       "parent_asin": item, "user_id": user, "timestamp": ts, "helpful_vote": 0,
                       "verified_purchase": True})


def meta23(item: str, **fields: Any) -> str:
    return json.dumps({"main_category": "All Beauty", "parent_asin": item, **fields})


def image23(name: str, hi_res: bool = True) -> dict[str, Any]:
    return {"thumb": f"https://m.media-amazon.com/{name}_thumb.jpg", "large": f"https://m.media-amazon.com/{name}.jpg",
            "variant": "MAIN", "hi_res": f"https://m.media-amazon.com/{name}_hi.jpg" if hi_res else None}


@pytest.fixture
def beauty23(tmp_path: Path) -> Path:
    write_lines(tmp_path / "All_Beauty.jsonl.gz", [
        review23("U1", "P2", 1_588_000_003_000), review23("U1", "P1", 1_588_000_001_000),
        review23("U2", "P1", 1_600_000_000_000), review23("U2", "P3", 1_500_000_000_000),
    ])
    write_lines(tmp_path / "meta_All_Beauty.jsonl.gz", [
        meta23("P1", title="Lipstick", description=["Red.", " Lasts long. "], store="Glam",
               categories=["Beauty", "Makeup", "Beauty"], images=[image23("p1a"), image23("p1b")]),
        meta23("P2", title="Comb", description=[], store=None, categories=[],
               images=[{"thumb": "https://x/t.jpg", "large": None, "hi_res": "https://x/h.jpg"}]),
        meta23("P3", title="Gel", description="plain string", images=[]),
        meta23("P9", title="never reviewed"),
    ])
    return tmp_path


def test_amazon2023_catalog_order_and_counts(beauty23: Path) -> None:
    builder = read_amazon2023(beauty23, None, None)
    assert builder.name == "All_Beauty"
    dataset = builder.build()
    stats = dataset.stats()
    assert (stats["users"], stats["items"], stats["interactions"], stats["catalog_items"]) == (2, 3, 4, 3)
    assert dataset.items["item_id"].to_pylist() == ["P1", "P2", "P3"]
    assert sequences(dataset) == {"U1": ["P1", "P2"], "U2": ["P3", "P1"]}
    assert dataset.sequences["timestamps"].to_pylist()[0] == [1_588_000_001, 1_588_000_003]  # ms -> s
    items = items_by_id(dataset)
    assert items["P1"]["title"] == "Lipstick" and items["P1"]["description"] == "Red. Lasts long."
    assert items["P1"]["brand"] == "Glam" and items["P1"]["categories"] == ["Beauty", "Makeup"]
    assert items["P1"]["image"] == "https://m.media-amazon.com/p1a.jpg"
    assert items["P2"]["image"] == "https://x/h.jpg" and items["P2"]["brand"] == ""
    assert items["P2"]["categories"] == ["All Beauty"]  # main_category fills empty categories
    assert items["P3"]["description"] == "plain string" and items["P3"]["image"] is None
    assert dataset.problems["catalog items without interactions (dropped)"]["count"] == 1
    assert dataset.problems["items without an image (image modality masked)"]["count"] == 1


def test_amazon2023_plain_jsonl_items_override_and_local_images(tmp_path: Path) -> None:
    data, elsewhere, folder = tmp_path / "data", tmp_path / "elsewhere", tmp_path / "images"
    for d in (data, elsewhere, folder):
        d.mkdir()
    reviews = write_lines(data / "Toys.jsonl", [review23("U1", "P1", 5), review23("U1", "P2", 7)])
    meta = write_lines(elsewhere / "my_meta.jsonl", [meta23("P2", title="two", images=[image23("p2")]),
                                                   meta23("P1", title="one", images=[image23("p1")])])
    Image.new("RGB", (2, 2)).save(folder / "P1.png")
    dataset = read_amazon2023(reviews, meta, folder).build()
    items = items_by_id(dataset)
    assert dataset.items["item_id"].to_pylist() == ["P2", "P1"]
    assert items["P1"]["image"] == str((folder / "P1.png").resolve())
    assert items["P2"]["image"] is None  # a local images folder replaces the URLs
    assert dataset.problems["items without an image (image modality masked)"]["count"] == 1


@pytest.mark.parametrize(("line", "field"), [
    ("{not json", None),
    ('{"parent_asin": "P1", "timestamp": 5}', "user_id"),
    ('{"user_id": "U2", "asin": "P1", "timestamp": 5}', "parent_asin"),
    ('{"user_id": "U2", "parent_asin": "P1"}', "timestamp"),
    ('{"user_id": "", "parent_asin": "P1", "timestamp": 5}', "user_id"),
])
def test_amazon2023_bad_review_line(tmp_path: Path, line: str, field: str | None) -> None:
    write_lines(tmp_path / "Toys.jsonl.gz", [review23("U1", "P1", 1), review23("U1", "P1", 2), line])
    write_lines(tmp_path / "meta_Toys.jsonl.gz", [meta23("P1")])
    with pytest.raises(DataError) as info:
        read_amazon2023(tmp_path, None, None)
    assert "Toys.jsonl.gz:3:" in str(info.value)
    if field:
        assert f"field '{field}'" in str(info.value)


@pytest.mark.parametrize(("line", "field"), [
    ('{"parent_asin": "P1", "title": }', None),
    ('{"title": "no id"}', "parent_asin"),
    ("{'parent_asin': 'P1'}", None),  # Python literal is not JSON in 2023
    (meta23("P0"), "duplicate"),
])
def test_amazon2023_bad_meta_line(tmp_path: Path, line: str, field: str | None) -> None:
    write_lines(tmp_path / "Toys.jsonl.gz", [review23("U1", "P0", 1), review23("U1", "P1", 2)])
    write_lines(tmp_path / "meta_Toys.jsonl.gz", [meta23("P0"), line])
    with pytest.raises(DataError) as info:
        read_amazon2023(tmp_path, None, None)
    assert "meta_Toys.jsonl.gz:2:" in str(info.value)
    if field == "duplicate":
        assert "duplicate item id 'P0'" in str(info.value)
    elif field:
        assert f"field '{field}'" in str(info.value)


def test_amazon2023_bad_optional_fields_are_counted(tmp_path: Path) -> None:
    write_lines(tmp_path / "Toys.jsonl", [review23("U1", "P1", 1)])
    write_lines(tmp_path / "meta_Toys.jsonl", [meta23("P1", title=5, categories=[["x", 3]], images="nope")])
    dataset = read_amazon2023(tmp_path, None, None).build()
    item = items_by_id(dataset)["P1"]
    assert (item["title"], item["categories"], item["image"]) == ("", ["All Beauty"], None)
    bad = dataset.problems["meta fields with an unexpected type or value (field ignored)"]
    assert bad["count"] == 3
    assert any("meta_Toys.jsonl:1: field 'title'" in example for example in bad["examples"])
