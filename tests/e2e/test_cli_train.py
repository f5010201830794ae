"""`mmgr train / evaluate / recommend` on a small synthetic run: the generative path and SASRec."""

from __future__ import annotations

import json
import shutil

import pyarrow.parquet as pq
import pytest

from tests.helpers import mmgr

TINY_T5 = ["model.d_model=32", "model.num_layers=1", "model.num_decoder_layers=1", "model.num_heads=2",
           "model.d_kv=16", "model.d_ff=64", "model.user_buckets=50", "training.epochs=2", "training.batch_size=64",
           "training.precision=32-true", "decoding.beam_size=20", "decoding.top_k=20"]


def test_train_evaluate_recommend(encoded_run):
    run = encoded_run
    mmgr("tokenize", str(run), "--modality", "text", "--codebook", "8", "--levels", "2")
    logs = [mmgr("train", str(run), "--no-progress", *TINY_T5, process=True).stderr]   # noise shows in a process
    assert (run / "model.safetensors").is_file() and (run / "checkpoints" / "next-item" / "last.safetensors").is_file()
    logs.append(mmgr("evaluate", str(run), "--no-progress", process=True).stderr)
    results = json.loads((run / "results.json").read_text())
    for split in ("valid", "test"):
        assert results[split]["users"] == 30
        assert 0.0 <= results[split]["ndcg@10"] <= results[split]["hr@10"] <= results[split]["hr@20"] <= 1.0
    per_user = pq.read_table(run / "per_user_test.parquet")
    assert per_user.num_rows == 30 and set(per_user.column_names) >= {"user_id", "target", "ranked", "ndcg@10"}
    assert all(len(r) == 20 and len(set(r)) == 20 for r in per_user["ranked"].to_pylist())
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["stages"]["train"]["steps"] > 0 and manifest["stages"]["evaluate"]["test"]["users"] == 30
    shown = mmgr("recommend", str(run), "--user", "u0000", "--k", "5", process=True)
    assert shown.stdout.count("i0") >= 5
    for log in [*logs, shown.stderr]:   # no deprecation noise from transformers (the key/value cache's old name)
        assert "FutureWarning" not in log and "past_key_values" not in log, log


def test_recommend_and_evaluate_errors(encoded_run):
    result = mmgr("recommend", str(encoded_run), "--user", "nobody", check=False)
    assert result.returncode == 1 and "unknown user" in result.stderr
    mmgr("tokenize", str(encoded_run), "--modality", "text", "--codebook", "4", "--levels", "2")
    result = mmgr("evaluate", str(encoded_run), "--no-progress", check=False)
    assert result.returncode == 1 and "another tokenizer or vocabulary" in result.stderr


def test_sasrec_through_the_same_commands(encoded_run, tmp_path):
    run = encoded_run
    (tmp_path / "t5").mkdir()                       # the generative run's per-user results, for `mmgr compare`
    (tmp_path / "t5" / "per_user_test.parquet").write_bytes((run / "per_user_test.parquet").read_bytes())
    mmgr("train", str(run), "--no-progress", "--recipe", "configs/sasrec.yaml", "model.d_model=16",
         "model.d_ff=32", "training.epochs=2")
    mmgr("evaluate", str(run), "--no-progress")
    results = json.loads((run / "results.json").read_text())
    assert results["test"]["users"] == 30 and "exact top-k" in results["protocol"]["ranking"]
    compared = json.loads(mmgr("compare", str(tmp_path / "t5"), str(run), "--json", "--resamples", "500").stdout)
    ndcg = compared["metrics"]["ndcg@10"]
    assert compared["users"] == 30 and ndcg["b"] == results["test"]["ndcg@10"]
    assert ndcg["low"] <= ndcg["mean_difference"] <= ndcg["high"] and 0 <= ndcg["p_value"] <= 1
    assert "95% CI" in mmgr("compare", str(tmp_path / "t5"), str(run)).stdout
    result = mmgr("compare", str(tmp_path), str(run), check=False)
    assert result.returncode == 1 and "run `mmgr evaluate" in result.stderr


@pytest.mark.parametrize("kind", ["causal", "item-causal"])
def test_causal_backbones_through_the_same_commands(encoded_run, tmp_path, kind):
    run = tmp_path / "run"
    shutil.copytree(encoded_run, run)
    mmgr("tokenize", str(run), "--modality", "text", "--codebook", "8", "--levels", "2")
    mmgr("train", str(run), "--no-progress", "--recipe", f"configs/tiger-{kind}.yaml", "model.d_model=32",
         "model.num_layers=1", "model.num_heads=2", "model.d_kv=16", "model.d_ff=64", "model.user_buckets=0",
         "training.epochs=2", "training.batch_size=16", "training.precision=32-true")
    mmgr("evaluate", str(run), "--no-progress")
    results = json.loads((run / "results.json").read_text())
    assert results["test"]["users"] == 30 and 0 <= results["test"]["ndcg@10"] <= 1
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["config"]["model"]["kind"] == kind and manifest["stages"]["train"]["steps"] > 0
    assert mmgr("recommend", str(run), "--user", "u0000", "--k", "5").stdout.count("i0") >= 5
