"""The `mmgr` command as a user runs it: real datasets reproduce their published statistics, bad input is a
clear message with a non-zero exit and no run left behind."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

PUBLISHED = {  # dataset folder, format, (users, items, interactions)
    "beauty": ("amazon-beauty-2014", "p5", (22363, 12101, 198502)),
    "ml-100k": ("movielens-100k-posters", "recbole", (943, 1682, 100000)),
    "scientific": ("amazon-scientific-2018", "lcrec", (8317, 4344, 58492)),
}


def mmgr(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "mmgr", *args], capture_output=True, text=True, timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(f"mmgr {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result


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


def test_unbuilt_stage_says_so(tmp_path):
    result = mmgr("bench", str(tmp_path), check=False)
    assert result.returncode == 2 and "not built yet" in result.stderr


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
