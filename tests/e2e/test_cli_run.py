"""`mmgr run`: one recipe from data to results, reusing finished stages when run again."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from tests.helpers import mmgr, run_args


@pytest.fixture(scope="module")
def lfpp_run(tmp_path_factory):
    """MGR-LF++ from data to results with `mmgr run` (its first output, the run directory, the cache folder)."""
    folder = tmp_path_factory.mktemp("lfpp")
    run, cache = folder / "lfpp", folder / "cache"
    return mmgr(*run_args("mgr-lfpp", run, cache)).stdout, run, cache


def test_mgr_lfpp_recipe_runs_from_data_to_results_and_reuses_stages(lfpp_run):
    first, run, cache = lfpp_run
    assert "features image: encoding" in first and "codes image: fitting rq-kmeans" in first
    results = json.loads((run / "results.json").read_text())
    assert results["test"]["users"] == 30 and 0 <= results["test"]["ndcg@10"] <= 1
    vocab = json.loads((run / "vocabulary.json").read_text())
    assert list(vocab["levels"]) == ["text", "image"] and vocab["tasks"] == ["text->image", "image->text"]
    assert (run / "checkpoints" / "align" / "final.safetensors").is_file()
    manifest = json.loads((run / "manifest.json").read_text())
    assert set(manifest["stages"]["train"]["stages"]) == {"align", "next-item"}
    assert manifest["stages"]["pipeline"]["fallback"] is None
    evaluated = (run / "results.json").read_bytes()
    again = mmgr(*run_args("mgr-lfpp", run, cache)).stdout      # finished stages are reused, not recomputed
    assert "encoding" not in again and "fitting" not in again and "importing" not in again
    assert "train: reusing" in again and "evaluate: reusing" in again
    assert json.loads((run / "manifest.json").read_text())["stages"]["train"] == manifest["stages"]["train"]
    assert (run / "results.json").read_bytes() == evaluated               # read, never rewritten


def test_a_changed_decoding_setting_re_evaluates_without_retraining(lfpp_run, tmp_path):
    _, run, cache = lfpp_run
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    trained = json.loads((copy / "manifest.json").read_text())["stages"]["train"]
    out = mmgr(*run_args("mgr-lfpp", copy, cache), "decoding.beam_size=12", "decoding.top_k=12").stdout
    assert "train: reusing" in out and "evaluate: reusing" not in out
    assert json.loads((copy / "manifest.json").read_text())["stages"]["train"] == trained


def test_a_run_without_a_terminal_reports_progress_validations_and_a_summary_in_plain_lines(tmp_path):
    args = [a for a in run_args("tiger", tmp_path / "run", tmp_path / "cache") if a != "--no-progress"]
    log = mmgr(*args).stderr
    assert re.search(r"training \(next-item\): \d+/\d+ \(100%\), [\d.]+/s in \d+m\d\ds", log), log
    assert "validation: epoch 0, step" in log and "validation: epoch 1, step" in log
    assert re.search(r"validation: epoch 0, .*train loss \d+\.\d{4} since the last validation, [\d,]+ samples in "
                     r"\d+ s of training \(\d+/s\), ~\d+m\d\ds of training left", log), log
    assert re.search(r"next-item done: \d+ steps \(schedule \d+\), 2 epochs, best epoch \d", log)


def test_run_refuses_a_directory_holding_other_data(tmp_path):
    run = tmp_path / "r"
    mmgr("data", "import", "--format", "synthetic", "--out", str(run), "data.synthetic.n_items=40",
         "data.synthetic.n_users=30")
    result = mmgr("run", "--recipe", "configs/mgr-lf.yaml", "--out", str(run), "data.format=generic",
                  "data.path=elsewhere", check=False)
    assert result.returncode == 1 and "holds other data" in result.stderr


def test_analyze_writes_the_modality_analyses_into_the_run(lfpp_run, tmp_path):
    _, lfpp, cache = lfpp_run
    runs = {"tiger-text": tmp_path / "tiger", "mgr-lfpp": lfpp}
    mmgr(*run_args("tiger", runs["tiger-text"], cache))
    result = mmgr("analyze", *(f"{n}={p}" for n, p in runs.items()), "--out", str(lfpp))
    analysis = json.loads((lfpp / "analysis" / "modality.json").read_text())
    shares = analysis["analyses"]["correspondence"]["mgr-lfpp"]
    assert shares.pop("users") == 30                                 # every synthetic item has both modalities
    assert 0 <= shares.pop("items_named_by_text_part") <= 1
    assert abs(sum(shares.values()) - 1.0) < 1e-9                     # four disjoint outcomes
    assert set(analysis["analyses"]["by_user_kind"]["tiger-text"]) == {"text", "image", "both", "synergy"}
    assert (lfpp / "analysis" / "modality-metrics.png").read_bytes()[:4] == b"\x89PNG"
    assert "wrote" in result.stdout
    bad = mmgr("analyze", "nonsense", "--out", str(lfpp), check=False)
    assert bad.returncode == 1 and "NAME=RUN" in bad.stderr


def test_syngr_recipe_runs_and_recommends_from_fused_searches(tmp_path):
    run, cache = tmp_path / "syngr", tmp_path / "cache"
    mmgr(*run_args("syngr", run, cache), "tokenizer.collisions=append", "training.batch_size=32")
    vocab = json.loads((run / "vocabulary.json").read_text())
    assert vocab["tasks"] == ["next:text", "next:image"] and list(vocab["levels"]) == ["text", "image"]
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["config"]["training"]["objective"] == "syngr" and manifest["stages"]["pipeline"]["fallback"] is None
    shown = mmgr("recommend", str(run), "--user", "u0003", "--k", "5").stdout
    assert len(set(re.findall(r"i\d{4}", shown))) == 5, shown                 # five distinct items


def test_quickstart_runs_every_stage_through_the_runner_and_replaces_its_folder(tmp_path):
    out = tmp_path / "quick"
    small = ["data.synthetic.n_items=60", "data.synthetic.n_users=80", "training.epochs=2",
             f"encoders.cache_dir={tmp_path / 'cache'}"]
    said = mmgr("quickstart", "--out", str(out), "--no-progress", *small).stdout
    assert "data: importing synthetic" in said and "codes text: fitting rq-kmeans" in said and "done" in said
    assert json.loads((out / "results.json").read_text())["test"]["users"] == 80
    (out / "stale.txt").write_text("from an earlier quickstart")
    mmgr("quickstart", "--out", str(out), "--no-progress", *small)               # a second run starts afresh
    assert not (out / "stale.txt").exists() and (out / "results.json").is_file()
