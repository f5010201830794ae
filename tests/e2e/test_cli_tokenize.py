"""`mmgr tokenize` on a small synthetic run and with a published SID table."""

from __future__ import annotations

import json

import pytest
from safetensors import safe_open

from tests.helpers import mmgr


def codes_of(run, modality):
    with safe_open(str(run / "codes" / f"{modality}.safetensors"), framework="numpy") as handle:
        return handle.get_tensor("codes")


@pytest.mark.parametrize("method", ["rq-kmeans", "rq-vae"])
def test_tokenize_writes_unique_codes_and_diagnostics(encoded_run, method):
    run = encoded_run
    mmgr("tokenize", str(run), "--modality", "text", "--method", method, "--levels", "2", "--codebook", "8",
         "tokenizer.rqvae.epochs=20", "tokenizer.rqvae.hidden=[64]", "tokenizer.rqvae.batch_size=64")
    codes = codes_of(run, "text")
    assert codes.shape == (40, 3) and len({tuple(r) for r in codes.tolist()}) == 40
    report = json.loads((run / "tokenizers" / "text.diagnostics.json").read_text())
    assert report["tokenizer"] == method and report["collision_rate_after"] == 0.0
    assert len(report["utilisation"]) == 2 and len(report["reconstruction_cosine"]) == 2
    assert (run / "tokenizers" / "text.diagnostics.png").read_bytes()[:4] == b"\x89PNG"
    assert not (run / "codes" / "vocabulary.json").exists()            # the run's vocabulary is built by train
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["stages"]["tokenize.text"]["tokenizer"] == method


def test_image_codes_sit_beside_the_text_codes(encoded_run):
    mmgr("tokenize", str(encoded_run), "--modality", "text", "--codebook", "8")
    mmgr("tokenize", str(encoded_run), "--modality", "image", "--codebook", "8", "--collisions", "append",
         "--levels", "2")
    assert codes_of(encoded_run, "text").shape[0] == 40
    assert len({tuple(r) for r in codes_of(encoded_run, "image").tolist()}) == 40


def test_bad_requests_are_explained(encoded_run, tmp_path):
    import shutil

    run = tmp_path / "run"                                      # other tests may encode `fused` into the shared run
    shutil.copytree(encoded_run, run, ignore=shutil.ignore_patterns("fused.*", ".lock"))
    result = mmgr("tokenize", str(run), "--modality", "fused", check=False)                # not encoded here
    assert result.returncode == 1 and "mmgr encode" in result.stderr and "--modality fused" in result.stderr
    result = mmgr("tokenize", str(encoded_run), "--modality", "interests", check=False)   # not a SID modality
    assert result.returncode == 1 and "unknown modality 'interests'" in result.stderr
    result = mmgr("tokenize", str(encoded_run), "--modality", "text", "--codebook", "64", check=False)
    assert result.returncode == 1 and "fewer than the codebook size" in result.stderr


def test_import_published_table(shared_data, tmp_path):
    run = tmp_path / "sci"
    mmgr("data", "import", "--format", "lcrec", str(shared_data / "amazon-scientific-2018"), "--out", str(run))
    said = mmgr("tokenize", str(run), "--modality", "text", "--import",
                str(shared_data / "amazon-scientific-2018/indexes/letter_native.Scientific.index.json")).stdout
    assert "appended: level 5 of size" in said and "largest code seen" in said      # what the import did, said
    codes = codes_of(run, "text")
    assert codes.shape == (4344, 5) and len({tuple(r) for r in codes.tolist()}) == 4344
    assert (codes[:, 4] > 0).any()   # colliding items were told apart by the extra code


def test_import_checks_the_table_against_the_run_and_never_overwrites(tmp_path):
    folder = tmp_path / "toy"
    folder.mkdir()
    (folder / "Toy.inter.json").write_text(json.dumps({"0": [0, 1, 2], "1": [2, 1, 0]}))
    run = tmp_path / "run"
    mmgr("data", "import", str(folder), "--out", str(run))
    table = tmp_path / "other.index.json"
    table.write_text(json.dumps({str(i): [f"<a_{i}>", f"<b_{i}>"] for i in range(4)}))
    result = mmgr("tokenize", str(run), "--modality", "text", "--import", str(table), check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "run has 3 items, the table 4" in result.stderr and "(first: '3')" in result.stderr
    assert not (run / "codes").exists()
    table.write_text(json.dumps({"0": ["<A_1>", "<B_1>"], "1": ["<a_2>", "<b_0>"], "2": [3, "0"]}))
    mmgr("tokenize", str(run), "--modality", "text", "--import", str(table))
    assert codes_of(run, "text")[:, :2].tolist() == [[1, 1], [2, 0], [3, 0]]
    result = mmgr("tokenize", str(run), "--modality", "text", "--import", str(table), check=False)
    assert result.returncode == 1 and "--force" in result.stderr
    mmgr("tokenize", str(run), "--modality", "text", "--import", str(table), "--force")


def test_arts_tables_align_with_real_asins(shared_data, tmp_path):
    run = tmp_path / "arts"
    mmgr("data", "import", "--format", "lcrec", str(shared_data / "amazon-arts-2018"), "--out", str(run))
    for modality, name in (("text", "lemb"), ("image", "vitemb")):
        mmgr("tokenize", str(run), "--modality", modality, "--import",
             str(shared_data / f"amazon-arts-2018/Arts.index_{name}.json"))
    text, image = codes_of(run, "text"), codes_of(run, "image")
    assert text.shape[0] == image.shape[0] == 9416
    assert text[0, :4].tolist() == [129, 86, 82, 78] and image[0, :4].tolist() == [156, 107, 35, 40]
