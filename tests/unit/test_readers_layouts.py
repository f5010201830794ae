"""Published layouts and id maps: P5 `sequential.txt` / a file PATH / `datamaps.json` users, LC-Rec and
MQL4GRec `X.item2id` / `X.user2id`, RecBole benchmark split files, format detection, strict decoding and quoting,
SID tables in every published spelling, checked against the run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from mmgr.config import load_config
from mmgr.data.dataset import Dataset
from mmgr.data.formats.detect import detect_format
from mmgr.data.formats.lcrec import read_lcrec
from mmgr.data.formats.p5 import read_p5
from mmgr.data.formats.recbole import read_recbole
from mmgr.data.importer import import_into_run
from mmgr.errors import DataError, MmgrError
from mmgr.rundir import RunDir
from mmgr.tokenizers.external import read_index
from mmgr.tokenizers.stage import import_codes


def sequences(dataset: Dataset) -> dict[str, list[str]]:
    ids = dataset.items["item_id"].to_pylist()
    users = dataset.sequences["user_id"].to_pylist()
    return {u: [ids[i] for i in seq] for u, seq in zip(users, dataset.item_sequences(), strict=True)}


# --- P5 -------------------------------------------------------------------------------------------

def p5_folder(folder: Path, name: str = "sequential.txt", users: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("1 1 2 3\n2 3 1\n")
    maps = {"item2id": {"B01": "1", "B02": "2", "B03": "3"}, "id2item": {"1": "B01", "2": "B02", "3": "B03"}}
    if users:
        maps["user2id"] = {"AREVIEWER": "1", "BREVIEWER": "2"}
    (folder / "datamaps.json").write_text(json.dumps(maps))
    (folder / "items.csv").write_text('asin,title\nB01,"Lip, gloss"\nB02,Mascara\nB03,\n')
    return folder


def test_p5_accepts_sequential_txt_and_the_file_itself_with_real_user_ids(tmp_path):
    folder = p5_folder(tmp_path / "beauty")
    for path in (folder, folder / "sequential.txt"):
        dataset = read_p5(path).build()
        assert sequences(dataset) == {"AREVIEWER": ["B01", "B02", "B03"], "BREVIEWER": ["B03", "B01"]}
        assert dataset.sequences["source_index"].to_pylist() == ["1", "2"]
        assert dataset.items["source_index"].to_pylist() == ["1", "2", "3"]
        assert dataset.items["title"].to_pylist() == ["Lip, gloss", "Mascara", ""]
    (folder / "sequential_data.txt").write_text("1 1\n")
    with pytest.raises(DataError, match="both sequential_data.txt and sequential.txt"):
        read_p5(folder)


def test_without_id_maps_ids_are_the_files_and_the_fingerprint_is_as_before(tmp_path):
    dataset = read_p5(p5_folder(tmp_path / "b", users=False)).build()
    assert dataset.sequences["user_id"].to_pylist() == ["1", "2"]
    assert dataset.source_indices("sequences") is None
    folder = lcrec_folder(tmp_path / "toy")
    for name in ("Toy.item2id", "Toy.user2id"):
        (folder / name).unlink()
    dataset = read_lcrec(folder).build()
    assert dataset.source_indices() is None and dataset.items["item_id"].to_pylist() == ["0", "1", "2"]
    dataset.save(tmp_path / "saved")
    for name in ("items.parquet", "sequences.parquet"):                 # tables written before the column existed
        path = tmp_path / "saved" / name
        pq.write_table(pq.read_table(path).drop_columns(["source_index"]), path)
    reloaded = Dataset.load(tmp_path / "saved")
    assert reloaded.items["source_index"].null_count == reloaded.num_items
    assert reloaded.fingerprint() == dataset.fingerprint()


def test_p5_unknown_user_and_invalid_bytes_and_unclosed_quote_are_located(tmp_path):
    folder = p5_folder(tmp_path / "c")
    (folder / "sequential.txt").write_text("1 1 2\n7 3\n")
    with pytest.raises(DataError, match=r"sequential.txt:2: field 'column 1': unknown user id '7'"):
        read_p5(folder)
    (folder / "sequential.txt").write_bytes(b"1 1 2\n2 3 \xff\xfe 1\n")
    with pytest.raises(DataError, match=r"sequential.txt:2: not UTF-8 text \(byte 0xff at column 5\)"):
        read_p5(folder)
    (folder / "sequential.txt").write_text("1 1 2\n")
    (folder / "items.csv").write_text('asin,title\nB01,"Lip gloss\nB02,Mascara\n')
    with pytest.raises(DataError, match=r"items.csv:2: malformed CSV \(a quote opened on this line is never closed"):
        read_p5(folder)


# --- LC-Rec / MQL4GRec id maps ------------------------------------------------------------------

def lcrec_folder(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "Toy.inter.json").write_text(json.dumps({"0": [0, 1, 2], "1": [2, 0]}))
    (folder / "Toy.item2id").write_text("ASIN_A\t0\nASIN_B\t1\nASIN_C\t2\n")
    (folder / "Toy.user2id").write_text("REV_X\t0\nREV_Y\t1\n")
    return folder


def test_lcrec_uses_item2id_and_user2id_and_keeps_the_index(tmp_path):
    dataset = read_lcrec(lcrec_folder(tmp_path / "toy")).build()
    assert sequences(dataset) == {"REV_X": ["ASIN_A", "ASIN_B", "ASIN_C"], "REV_Y": ["ASIN_C", "ASIN_A"]}
    assert dataset.items["source_index"].to_pylist() == ["0", "1", "2"]
    assert dataset.sequences["source_index"].to_pylist() == ["0", "1"]


def test_lcrec_titles_csv_joins_by_real_id(tmp_path):
    folder = lcrec_folder(tmp_path / "toy")
    (folder / "items.csv").write_text("asin,title\nASIN_B,Brush\nASIN_A,Awl\n")
    dataset = read_lcrec(folder, folder / "items.csv").build()
    assert dataset.items["title"].to_pylist() == ["Awl", "Brush", ""]


def test_lcrec_item_outside_the_map_and_bad_json_are_located(tmp_path):
    folder = lcrec_folder(tmp_path / "toy")
    (folder / "Toy.inter.json").write_text(json.dumps({"0": [0, 5]}))
    with pytest.raises(DataError, match=r"Toy.inter.json: field '0\[1\]': item '5' is not in Toy.item2id"):
        read_lcrec(folder)
    (folder / "Toy.inter.json").write_text('{"0": [0, 1],\n "0": [2]}')
    with pytest.raises(DataError, match=r"Toy.inter.json:2: field '0': duplicate key '0'"):
        read_lcrec(folder)
    (folder / "Toy.inter.json").write_bytes(b'{"0": [0, 1],\n "1": ["\xc3("]}')
    with pytest.raises(DataError, match=r"Toy.inter.json:2: not UTF-8"):
        read_lcrec(folder)
    (folder / "Toy.inter.json").write_text(json.dumps({"0": [0, 1.5]}))
    with pytest.raises(DataError, match=r"field '0\[1\]': expected an item id"):
        read_lcrec(folder)
    (folder / "Toy.item2id").write_text("ASIN_A\t0\nASIN_B\t0\n")
    with pytest.raises(DataError, match=r"Toy.item2id:2: field 'index': index 0 is given twice"):
        read_lcrec(folder)


# --- RecBole benchmark splits ------------------------------------------------------------------

HEADER = "user_id:token\titem_id_list:token_seq\titem_id:token\n"


def unisrec_splits(folder: Path, full: dict[str, list[str]], cap: int = 50, reverse: bool = True) -> Path:
    """Split files written as UniSRec's `convert_to_atomic_files` does (train rows longest history first)."""
    folder.mkdir(parents=True, exist_ok=True)
    train, valid, test = [HEADER], [HEADER], [HEADER]
    for user, seq in full.items():
        rows = [f"{user}\t{' '.join(seq[:k][-cap:])}\t{seq[k]}\n" for k in range(1, len(seq) - 2)]
        train.extend(rows[::-1] if reverse else rows)
        valid.append(f"{user}\t{' '.join(seq[:-2][-cap:])}\t{seq[-2]}\n")
        test.append(f"{user}\t{' '.join(seq[:-1][-cap:])}\t{seq[-1]}\n")
    for name, lines in (("train", train), ("valid", valid), ("test", test)):
        (folder / f"Sci.{name}.inter").write_text("".join(lines))
    return folder


FULL = {"0": ["1", "2", "3", "4", "5"], "1": [str(i) for i in range(10, 19)], "2": ["7", "8", "9"]}


@pytest.mark.parametrize("reverse", [True, False])
@pytest.mark.parametrize("cap", [50, 3])
def test_recbole_split_files_rebuild_the_full_sequences(tmp_path, reverse, cap):
    folder = unisrec_splits(tmp_path / "sci", FULL, cap=cap, reverse=reverse)
    for path in (folder, folder / "Sci.test.inter", folder / "Sci.train.inter"):
        dataset = read_recbole(path).build()
        assert sequences(dataset) == FULL
        assert dataset.stats()["interactions"] == 17


def test_recbole_split_disagreement_names_file_and_line(tmp_path):
    folder = unisrec_splits(tmp_path / "sci", FULL)
    lines = (folder / "Sci.valid.inter").read_text().splitlines(keepends=True)
    lines[2] = lines[2].replace("10 11", "10 99")
    (folder / "Sci.valid.inter").write_text("".join(lines))
    with pytest.raises(DataError, match=r"Sci.valid.inter:3: field 'item_id_list': user '1': history .* disagrees"):
        read_recbole(folder)
    folder = unisrec_splits(tmp_path / "sci2", FULL)
    test = (folder / "Sci.test.inter").read_text().splitlines(keepends=True)
    (folder / "Sci.test.inter").write_text("".join(test[:3]))                    # user 2 lost its test row
    with pytest.raises(DataError, match=r"user '2' has no row in Sci.test.inter"):
        read_recbole(folder)


def test_a_single_file_with_a_history_column_is_never_read_as_interactions(tmp_path):
    (tmp_path / "one.inter").write_text(HEADER + "u1\ta b c\td\nu2\t\te\n")
    dataset = read_recbole(tmp_path / "one.inter").build()
    assert sequences(dataset) == {"u1": ["a", "b", "c", "d"], "u2": ["e"]}
    (tmp_path / "two.inter").write_text(HEADER.replace("\n", "\trating:float\n") + "u1\ta\tb\t5\n")
    with pytest.raises(DataError, match=r"two.inter:1: field 'rating': unexpected column"):
        read_recbole(tmp_path / "two.inter")


def test_recbole_benchmark_files_without_history_and_unisrec_maps(tmp_path):
    folder = tmp_path / "ml"
    folder.mkdir()
    plain = "user_id:token\titem_id:token\ttimestamp:float\n"
    (folder / "ml.train.inter").write_text(plain + "u1\ti1\t1\nu1\ti2\t2\n")
    (folder / "ml.valid.inter").write_text(plain + "u1\ti3\t3\n")
    (folder / "ml.test.inter").write_text(plain + "u1\ti4\t4\n")
    assert sequences(read_recbole(folder).build()) == {"u1": ["i1", "i2", "i3", "i4"]}
    folder = unisrec_splits(tmp_path / "sci", {"0": ["0", "1", "2", "1"]})
    (folder / "Sci.item2index").write_text("B0\t0\nB1\t1\nB2\t2\n")
    (folder / "Sci.user2index").write_text("AU\t0\n")
    (folder / "Sci.text").write_text("item_id:token\ttext:token_seq\n1\tA brush.\n")
    dataset = read_recbole(folder).build()
    assert sequences(dataset) == {"AU": ["B0", "B1", "B2", "B1"]}
    assert dataset.items["title"].to_pylist() == ["", "A brush.", ""]


# --- detection ----------------------------------------------------------------------------------

def test_detect_format_from_file_names(tmp_path):
    assert detect_format(p5_folder(tmp_path / "a")) == "p5"
    assert detect_format(p5_folder(tmp_path / "b" / "p5").parent) == "p5"
    assert detect_format(lcrec_folder(tmp_path / "c")) == "lcrec"
    assert detect_format(unisrec_splits(tmp_path / "d", FULL)) == "recbole"
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "reviews_Beauty_5.json.gz").write_bytes(b"")
    (tmp_path / "e" / "meta_Beauty.json.gz").write_bytes(b"")
    assert detect_format(tmp_path / "e") == "amazon2014"
    assert detect_format(tmp_path / "e" / "meta_Beauty.json.gz") == "amazon2014"
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "All_Beauty.jsonl").write_bytes(b"")
    (tmp_path / "f" / "meta_All_Beauty.jsonl").write_bytes(b"")
    assert detect_format(tmp_path / "f") == "amazon2023"
    (tmp_path / "f" / "interactions.csv").write_text("user_id,item_id\n")
    with pytest.raises(DataError, match=r"several formats are here: amazon2023 \(expects <Category>\.jsonl\.gz "
                                        r"\+ meta_<Category>\.jsonl\.gz\); generic \(expects interactions"):
        detect_format(tmp_path / "f")
    (tmp_path / "g").mkdir()
    with pytest.raises(DataError, match="cannot tell the data format.*p5: sequential_data.txt.*synthetic"):
        detect_format(tmp_path / "g")


def test_detect_format_on_the_real_datasets(shared_data):
    expected = {"amazon-beauty-2014": "p5", "movielens-100k-posters": "recbole", "amazon-scientific-2018": "lcrec",
                "amazon-arts-2018": "lcrec"}
    assert {name: detect_format(shared_data / name) for name in expected} == expected


# --- SID tables ---------------------------------------------------------------------------------

def test_every_published_code_spelling_is_read(tmp_path):
    path = tmp_path / "t.index.json"
    path.write_text(json.dumps({"0": ["<a_1>", "<b_2>"], "1": ["<A_3>", "<B_4>"], "2": [5, "6"]}))
    assert read_index(path, ["0", "1", "2"]).tolist() == [[1, 2], [3, 4], [5, 6]]
    for bad in (["<b_1>", "<b_2>"], [True, 2], [-1, 2], ["<a_x>", 1], [1.5, 2], ["<a_99999999>", 1]):
        path.write_text(json.dumps({"0": bad}))
        with pytest.raises(DataError, match=r"t.index.json: field '0': code .* at level 0"):
            read_index(path, ["0"])


def test_tables_are_aligned_by_source_index_when_ids_are_real(tmp_path):
    path = tmp_path / "Arts.index.json"
    path.write_text(json.dumps({"0": ["<a_1>"], "1": ["<a_2>"]}))
    assert read_index(path, ["B0", "B1"], source_ids=["1", "0"]).tolist() == [[2], [1]]
    path.write_text(json.dumps({"B1": ["<a_2>"], "B0": ["<a_1>"]}))                  # or keyed by the real id
    assert read_index(path, ["B0", "B1"], source_ids=["1", "0"]).tolist() == [[1], [2]]


@pytest.fixture
def small_run(tmp_path) -> RunDir:
    folder = lcrec_folder(tmp_path / "toy")
    config = load_config(overrides=["data.format=lcrec", f"data.path={folder}"])
    return import_into_run(config, tmp_path / "run")[0]


def test_import_refuses_another_catalog_and_never_overwrites_without_force(small_run, tmp_path):
    table = tmp_path / "Toy.index.json"
    table.write_text(json.dumps({str(i): [f"<a_{i}>", f"<b_{i % 2}>"] for i in range(5)}))   # 5 items, run has 3
    with pytest.raises(DataError, match=r"run has 3 items, the table 5.*2 of its keys are not .*'3'"):
        import_codes(small_run, "text", table, "item_id")
    assert not (small_run.path / "codes").exists()
    table.write_text(json.dumps({"0": ["<a_1>"], "2": ["<a_2>"]}))
    with pytest.raises(DataError, match=r"run has 3 items, the table 2.*1 of the run's items .*'1'"):
        import_codes(small_run, "text", table, "item_id")
    table.write_text(json.dumps({"0": ["<A_1>"], "1": [2], "2": ["<a_3>"]}))
    report = import_codes(small_run, "text", table, "item_id")
    assert report["items"] == 3 and report["align"] == "item_id"
    with pytest.raises(MmgrError, match="already holds text codes .*--force"):
        import_codes(small_run, "text", table, "item_id")
    import_codes(small_run, "text", table, "row", force=True)
    with pytest.raises(DataError, match=r"run has 3 items"):                       # refused: nothing replaced
        table.write_text(json.dumps({"0": ["<a_1>"]}))
        import_codes(small_run, "text", table, "row", force=True)
    from mmgr.tokenizers.stage import load_codes
    assert np.array_equal(load_codes(small_run)["text"].codes[:, 0], [1, 2, 3])


def test_pipeline_reimports_a_table_only_when_the_recipe_names_another(small_run, tmp_path):
    from mmgr.pipeline import ensure_codes
    from mmgr.tokenizers.stage import load_codes

    tables = {}
    for name, offset in (("a", 0), ("b", 5)):
        tables[name] = tmp_path / f"{name}.index.json"
        tables[name].write_text(json.dumps({str(i): [f"<a_{i + offset}>"] for i in range(3)}))
    said: list[str] = []
    config = small_run.config([f"tokenizer.tables.text={tables['a']}"])
    ensure_codes(small_run, "text", config, False, said.append)
    ensure_codes(small_run, "text", config, False, said.append)          # same table: kept
    assert len(said) == 1
    ensure_codes(small_run, "text", small_run.config([f"tokenizer.tables.text={tables['b']}"]), False, said.append)
    assert len(said) == 2 and load_codes(small_run)["text"].codes[:, 0].tolist() == [5, 6, 7]
