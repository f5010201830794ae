"""The `mmgr` command as a user runs it: real datasets reproduce their published statistics, bad input is a
clear message with a non-zero exit and no run left behind."""

from __future__ import annotations

import json

import pytest

from tests.helpers import mmgr

PUBLISHED = {  # dataset folder, format, (users, items, interactions)
    "beauty": ("amazon-beauty-2014", "p5", (22363, 12101, 198502)),
    "ml-100k": ("movielens-100k-posters", "recbole", (943, 1682, 100000)),
    "scientific": ("amazon-scientific-2018", "lcrec", (8317, 4344, 58492)),
}


@pytest.mark.parametrize("name", PUBLISHED)
def test_import_reproduces_published_statistics(name, shared_data, tmp_path):
    folder, fmt, (users, items, interactions) = PUBLISHED[name]
    run = tmp_path / name
    mmgr("data", "import", "--format", fmt, str(shared_data / folder), "--out", str(run))
    stats = json.loads(mmgr("data", "stats", str(run), "--json").stdout)
    assert (stats["stats"]["users"], stats["stats"]["items"], stats["stats"]["interactions"]) == (
        users, items, interactions)
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["dataset"]["fingerprint"] == stats["fingerprint"]
    assert manifest["split"]["test_examples"] == users
    assert manifest["config"]["data"]["format"] == fmt


def test_movielens_posters_and_missing_images_are_counted(shared_data, tmp_path):
    run = tmp_path / "ml"
    mmgr("data", "import", "--format", "recbole", str(shared_data / "movielens-100k-posters"), "--out", str(run))
    stats = json.loads(mmgr("data", "stats", str(run), "--json").stdout)
    assert stats["stats"]["items_with_image"] == 1419
    assert stats["problems"]["items without an image (image modality masked)"]["count"] == 263


def test_kcore_on_real_data_is_reported(shared_data, tmp_path):
    run = tmp_path / "ml"
    mmgr("data", "import", "--format", "recbole", str(shared_data / "movielens-100k-posters"), "--out", str(run),
         "data.kcore=5")
    stats = json.loads(mmgr("data", "stats", str(run), "--json").stdout)
    dropped = stats["problems"]["items dropped by 5-core filter"]["count"]
    assert stats["stats"]["items"] == 1682 - dropped and dropped > 0


def test_bad_data_is_a_located_error_with_nothing_left(tmp_path):
    folder = tmp_path / "p5"
    folder.mkdir()
    (folder / "sequential_data.txt").write_text("1 1 2\n2 1 x\n")
    (folder / "datamaps.json").write_text('{"id2item": {"1": "A", "2": "B"}}')
    run = tmp_path / "run"
    result = mmgr("data", "import", "--format", "p5", str(folder), "--out", str(run), check=False)
    assert result.returncode == 1
    assert "sequential_data.txt:2:" in result.stderr and "'x'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not run.exists()


def test_config_errors_are_messages_not_tracebacks(tmp_path):
    result = mmgr("data", "import", "--format", "synthetic", "--out", str(tmp_path / "r"), "data.kcor=2",
                  check=False)
    assert result.returncode == 1 and "unknown key 'data.kcor'" in result.stderr and "kcore" in result.stderr
    assert "Traceback" not in result.stderr
    result = mmgr("data", "stats", str(tmp_path), check=False)
    assert result.returncode == 1 and "not a run directory" in result.stderr


def test_existing_run_is_not_overwritten_without_force(tmp_path):
    run = tmp_path / "run"
    args = ("data", "import", "--format", "synthetic", "--out", str(run), "data.synthetic.n_users=40",
            "data.synthetic.n_items=60")
    mmgr(*args)
    result = mmgr(*args, check=False)
    assert result.returncode == 1 and "--force" in result.stderr
    mmgr(*args, "--force")


def test_tampered_tables_are_detected(tmp_path):
    run = tmp_path / "run"
    mmgr("data", "import", "--format", "synthetic", "--out", str(run), "data.synthetic.n_users=40",
         "data.synthetic.n_items=60")
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["dataset"]["fingerprint"] = "0" * 64
    (run / "manifest.json").write_text(json.dumps(manifest))
    result = mmgr("data", "stats", str(run), check=False)
    assert result.returncode == 1 and "fingerprint" in result.stderr


def small_p5(folder):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sequential.txt").write_text("1 1 2 3\n2 3 1 2\n")
    (folder / "datamaps.json").write_text(json.dumps({"id2item": {"1": "B01", "2": "B02", "3": "B03"},
                                                      "id2user": {"1": "AREV", "2": "BREV"}}))
    return folder


def test_format_is_detected_from_the_file_names_or_refused(tmp_path):
    run = tmp_path / "run"
    result = mmgr("data", "import", str(small_p5(tmp_path / "shop")), "--out", str(run))
    assert "format: p5 (detected" in result.stdout
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["config"]["data"]["format"] == "p5" and manifest["dataset"]["name"] == "shop"
    stats = json.loads(mmgr("data", "stats", str(run), "--json").stdout)
    assert (stats["stats"]["users"], stats["stats"]["interactions"]) == (2, 6)
    (tmp_path / "empty").mkdir()
    for args, message in (((str(tmp_path / "empty"),), "cannot tell the data format"),
                          ((), "no input: pass PATH"),
                          (("--format", "synthetic", str(tmp_path / "shop")), "reads no PATH")):
        result = mmgr("data", "import", *args, "--out", str(tmp_path / "refused"), check=False)
        assert result.returncode == 1 and message in result.stderr and "Traceback" not in result.stderr
        assert not (tmp_path / "refused").exists()


def test_invalid_bytes_and_unclosed_quotes_are_located_errors(tmp_path):
    folder = small_p5(tmp_path / "p5")
    (folder / "sequential.txt").write_bytes(b"1 1 2\n2 \xe9t\xe9 1\n")
    result = mmgr("data", "import", "--format", "p5", str(folder), "--out", str(tmp_path / "r"), check=False)
    assert result.returncode == 1 and "sequential.txt:2: not UTF-8 text" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "r").exists()
    (folder / "sequential.txt").write_text("1 1 2\n")
    (folder / "items.csv").write_text('asin,title\nB01,"Lip gloss\nB02,Mascara\n')
    result = mmgr("data", "import", str(folder), "--out", str(tmp_path / "r"), check=False)
    assert result.returncode == 1 and "items.csv:2: malformed CSV" in result.stderr and "never closed" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "r").exists()


def test_real_reviewer_ids_and_asins_come_from_the_published_maps(shared_data, tmp_path):
    import pyarrow.parquet as pq

    run = tmp_path / "beauty"
    mmgr("data", "import", str(shared_data / "amazon-beauty-2014"), "--out", str(run))
    sequences = pq.read_table(run / "sequences.parquet").slice(0, 1).to_pylist()[0]
    assert (sequences["user_id"], sequences["source_index"]) == ("A1YJEY40YUW4SE", "1")
    items = pq.read_table(run / "items.parquet").slice(0, 1).to_pylist()[0]
    assert (items["item_id"], items["source_index"]) == ("B004756YJA", "1") and items["title"]
    run = tmp_path / "arts"
    mmgr("data", "import", str(shared_data / "amazon-arts-2018"), "--out", str(run))
    items = pq.read_table(run / "items.parquet", columns=["item_id", "source_index"]).to_pylist()
    assert items[0] == {"item_id": "B003D7B7C2", "source_index": "0"} and len(items) == 9416
