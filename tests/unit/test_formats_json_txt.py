"""P5, LC-Rec and RecBole readers on small fixtures the tests write, including bad input."""

import json

import pytest
from PIL import Image

from mmgr.data.formats.lcrec import read_lcrec
from mmgr.data.formats.p5 import read_p5
from mmgr.data.formats.recbole import read_recbole
from mmgr.errors import DataError


def write_p5(folder, lines, id2item=None, items_csv="asin,title\nA1,Lipstick\nA2,Mascara\nA3,\n"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sequential_data.txt").write_text("".join(line + "\n" for line in lines))
    (folder / "datamaps.json").write_text(json.dumps({"id2item": id2item or {"1": "A1", "2": "A2", "3": "A3"}}))
    if items_csv is not None:
        (folder / "items.csv").write_text(items_csv)
    return folder


def test_p5_reads_sequences_in_file_order_with_titles(tmp_path):
    folder = write_p5(tmp_path / "p5", ["1 3 1 2", "2 2 3 1 3"])
    dataset = read_p5(folder).build()
    assert dataset.items["item_id"].to_pylist() == ["A1", "A2", "A3"]
    assert dataset.items["title"].to_pylist() == ["Lipstick", "Mascara", ""]
    assert dataset.items["has_text"].to_pylist() == [True, True, False]
    assert [s.tolist() for s in dataset.item_sequences()] == [[2, 0, 1], [1, 2, 0, 2]]
    assert dataset.stats()["interactions"] == 7
    assert dataset.problems["items with an empty title (text modality masked)"]["count"] == 1


def test_p5_unknown_item_names_file_line_and_column(tmp_path):
    folder = write_p5(tmp_path / "p5", ["1 1 2", "2 2 9"])
    with pytest.raises(DataError) as err:
        read_p5(folder)
    message = str(err.value)
    assert "sequential_data.txt:2:" in message and "column 3" in message and "'9'" in message


def test_p5_duplicate_user_and_empty_history(tmp_path):
    with pytest.raises(DataError, match=r"sequential_data.txt:2: field 'user_id': duplicate user id '1'"):
        read_p5(write_p5(tmp_path / "a", ["1 1 2", "1 2 3"]))
    dataset = read_p5(write_p5(tmp_path / "b", ["1 1 2 3", "2"])).build()
    assert dataset.num_users == 1
    assert dataset.problems["users with an empty history (dropped)"]["count"] == 1


def test_p5_missing_files_and_bad_items_csv(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="sequential_data.txt"):
        read_p5(tmp_path / "empty")
    with pytest.raises(DataError, match=r"items.csv:3: field 'asin': duplicate"):
        read_p5(write_p5(tmp_path / "c", ["1 1"], items_csv="asin,title\nA1,x\nA1,y\n"))
    with pytest.raises(DataError, match=r"items.csv:1: field 'title': missing column"):
        read_p5(write_p5(tmp_path / "d", ["1 1"], items_csv="asin,name\nA1,x\n"))
    bad = write_p5(tmp_path / "e", ["1 1"])
    (bad / "datamaps.json").write_text("{not json")
    with pytest.raises(DataError, match=r"datamaps.json:1: not valid JSON"):
        read_p5(bad)


def write_lcrec(folder, inter, items=None, name="Toy"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.inter.json").write_text(json.dumps(inter))
    if items is not None:
        (folder / f"{name}.item.json").write_text(json.dumps(items))
    return folder


def test_lcrec_reads_items_in_numeric_order_and_categories(tmp_path):
    items = {"10": {"title": "Ten", "categories": "A,B"}, "2": {"title": "Two", "brand": "X", "description": ""}}
    dataset = read_lcrec(write_lcrec(tmp_path, {"0": [10, 2], "1": [2, 10, 2]}, items)).build()
    assert dataset.items["item_id"].to_pylist() == ["2", "10"]
    assert dataset.items["categories"].to_pylist() == [[], ["A", "B"]]
    assert [s.tolist() for s in dataset.item_sequences()] == [[1, 0], [0, 1, 0]]


def test_lcrec_without_item_file_flags_missing_text(tmp_path):
    dataset = read_lcrec(write_lcrec(tmp_path, {"0": [0, 1, 2]})).build()
    assert dataset.items["has_text"].to_pylist() == [False] * 3
    assert dataset.problems["items with interactions but no metadata (kept, text missing)"]["count"] == 3


def test_a_codes_only_source_states_once_that_no_item_has_an_image_or_text(tmp_path):
    problems = read_lcrec(write_lcrec(tmp_path, {"0": [0, 1, 2], "1": [2, 1]})).build().problems
    assert problems["no item has an image (the source gives none; image SIDs can come from a table)"]["count"] == 3
    assert problems["no item has text (the source gives none; text SIDs can come from a table)"]["count"] == 3
    assert not any(name.startswith("items without an image") for name in problems)


def test_lcrec_bad_input(tmp_path):
    with pytest.raises(DataError, match=r"Toy.inter.json: field '0': user '0': expected a list"):
        read_lcrec(write_lcrec(tmp_path / "a", {"0": 5}))
    with pytest.raises(DataError, match=r"Toy.item.json: field '1.title': .*expected a string"):
        read_lcrec(write_lcrec(tmp_path / "b", {"0": [1]}, {"1": {"title": 3}}))
    folder = write_lcrec(tmp_path / "c", {"0": [1]})
    (folder / "Toy.inter.json").write_text('{"0": [1,\n')
    with pytest.raises(DataError, match=r"Toy.inter.json:2: not valid JSON"):
        read_lcrec(folder)
    with pytest.raises(DataError, match="exactly one"):
        read_lcrec(tmp_path)


def write_recbole(folder, inter_rows, item_rows=None, with_images=()):
    folder.mkdir(parents=True, exist_ok=True)
    header = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    (folder / "toy.inter").write_text(header + "".join("\t".join(r) + "\n" for r in inter_rows))
    if item_rows is not None:
        item_header = "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
        (folder / "toy.item").write_text(item_header + "".join("\t".join(r) + "\n" for r in item_rows))
    if with_images:
        (folder / "posters").mkdir()
        for item in with_images:
            Image.new("RGB", (8, 8), "red").save(folder / "posters" / f"{item}.jpg")
    return folder


def test_recbole_orders_by_timestamp_and_finds_posters(tmp_path):
    folder = write_recbole(
        tmp_path,
        [("u1", "i2", "4", "300"), ("u1", "i1", "5", "100"), ("u2", "i1", "3", "50"), ("u1", "i3", "1", "200")],
        [("i1", "Heat", "1995", "Action Crime"), ("i2", "Babe", "1995", "Comedy"), ("i3", "Up", "", "")],
        with_images=("i1", "i3"))
    (folder / "posters" / "i2.jpg").write_bytes(b"not a jpeg")
    dataset = read_recbole(folder).build()
    assert [s.tolist() for s in dataset.item_sequences()] == [[0, 2, 1], [0]]
    assert dataset.sequences["timestamps"].to_pylist()[0] == [100, 200, 300]
    assert dataset.items["title"].to_pylist() == ["Heat (1995)", "Babe (1995)", "Up"]
    assert dataset.items["categories"].to_pylist()[0] == ["Action", "Crime"]
    assert dataset.items["has_image"].to_pylist() == [True, False, True]
    masked = dataset.problems["items whose image is missing or unreadable (image modality masked)"]
    assert masked["count"] == 1 and "i2.jpg" in masked["examples"][0]


def test_recbole_bad_input_names_file_line_field(tmp_path):
    with pytest.raises(DataError, match=r"toy.inter:3: field 'timestamp': not a number: 'soon'"):
        read_recbole(write_recbole(tmp_path / "a", [("u1", "i1", "1", "5"), ("u1", "i2", "1", "soon")]))
    with pytest.raises(DataError, match=r"toy.inter:2: expected 4 tab-separated fields, found 3"):
        read_recbole(write_recbole(tmp_path / "b", [("u1", "i1", "1")]))
    with pytest.raises(DataError, match=r"toy.inter:2: field 'user_id': empty value"):
        read_recbole(write_recbole(tmp_path / "c", [("", "i1", "1", "5")]))
    with pytest.raises(DataError, match=r"toy.item:3: field 'item_id': duplicate item id 'i1'"):
        read_recbole(write_recbole(tmp_path / "d", [("u1", "i1", "1", "5")],
                                   [("i1", "A", "1", "x"), ("i1", "B", "2", "y")]))
