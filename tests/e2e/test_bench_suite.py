"""`mmgr bench --suite`: rows x seeds from one YAML file, a summary of means, spreads, budgets, convergence and paired
tests against the baseline, finished runs reused (read, never rewritten)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from tests.helpers import TINY, mmgr


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    folder = tmp_path_factory.mktemp("suite")
    spec = {"name": "tiny", "dataset": "configs/synthetic.yaml",
            "shared": [*TINY, f"encoders.cache_dir={folder / 'cache'}"], "seeds": [1], "baseline": "tiger",
            "rows": [{"name": "tiger", "description": "TIGER", "recipes": ["configs/tiger.yaml"], "seeds": [1, 2]},
                     {"name": "mgr-lf", "description": "MGR-LF", "recipes": ["configs/mgr-lf.yaml"]}],
            "claims": [{"paper": "MGR", "claim": "late fusion beats text", "row": "mgr-lf", "versus": "tiger"}]}
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(spec))
    args = ["bench", "--suite", str(path), "--out", str(folder / "out"), "--runs", str(folder / "runs"),
            "--records", str(folder / "records"), "--no-progress", "--resamples", "200"]
    return folder, args, mmgr(*args).stdout


def test_summary_has_each_row_over_its_seeds_with_budget_convergence_and_paired_tests(suite):
    folder, _, stdout = suite
    summary = json.loads((folder / "out" / "summary.json").read_text())
    assert summary["suite"] == "tiny" and summary["baseline"] == "tiger" and summary["command"].startswith("mmgr")
    assert summary["benchmark"] == "suite" and summary["method"] == "tiger+mgr-lf" and set(summary["metrics"]) == {
        "tiger", "mgr-lf"} and summary["device"] and "commit" in summary
    tiger, lf = summary["rows"]
    assert [tiger["name"], lf["name"]] == ["tiger", "mgr-lf"] and tiger["seeds"] == [1, 2] and lf["seeds"] == [1]
    per_seed = [json.loads((folder / "runs" / f"tiger-s{s}" / "results.json").read_text())["test"] for s in (1, 2)]
    for metric in ("hr@1", "hr@5", "hr@10", "ndcg@5", "ndcg@10"):
        values = [r[metric] for r in per_seed]
        assert tiger["metrics"][metric] == pytest.approx(np.mean(values), abs=1e-6)
        assert tiger["metrics_sd"][metric] == pytest.approx(np.std(values, ddof=1), abs=1e-6)
    assert tiger["vs_baseline"] is None and set(lf["vs_baseline"]) == {"ndcg@10", "hr@10"}
    test = lf["vs_baseline"]["ndcg@10"]
    assert test["ci"][0] <= test["diff"] <= test["ci"][1] and 0 <= test["p"] <= 1
    assert len(tiger["epochs"]) == 2 and all(s > 0 for s in tiger["samples_seen"] + lf["samples_seen"])
    assert isinstance(lf["converged"], bool) and "converged" in stdout
    saliency = summary["analyses"]["saliency"]
    assert list(saliency) == ["mgr-lf"] and saliency["mgr-lf"]["measure"] == "attention received"
    assert saliency["mgr-lf"]["rows"] > 0 and sum(saliency["mgr-lf"]["mean"].values()) == pytest.approx(1)
    report = json.loads((folder / "out" / "report.json").read_text())
    assert [r["name"] for r in report["convergence"]] == ["tiger", "mgr-lf"]
    markdown = (folder / "out" / "report.md").read_text()
    assert "Budget and convergence" in markdown and "Which modality each multimodal row reads" in markdown


def test_a_claim_is_the_paired_test_of_its_two_rows(suite):
    """The claim 'mgr-lf is above tiger' is the same paired test as mgr-lf's against the baseline, with a verdict."""
    folder, _, _ = suite
    summary = json.loads((folder / "out" / "summary.json").read_text())
    (claim,) = summary["claims"]
    assert claim["test"] == summary["rows"][1]["vs_baseline"]
    low, high = claim["test"]["ndcg@10"]["ci"]
    assert claim["verdict"] == ("holds" if low > 0 else "reversed" if high < 0 else "not shown")
    assert "Published claims tested on these rows" in (folder / "out" / "report.md").read_text()


def test_the_analyses_read_each_rows_first_seed(suite):
    """On the synthetic world every row's metrics are broken down by planted user kind (from its first seed's
    per-user results), and the late-fusion row gets the correspondence analysis; the report shows both."""
    import pyarrow.parquet as pq

    folder, _, _ = suite
    analyses = json.loads((folder / "out" / "summary.json").read_text())["analyses"]
    assert set(analyses["by_user_kind"]) == {"tiger", "mgr-lf"} and list(analyses["correspondence"]) == ["mgr-lf"]
    world = json.loads((folder / "runs" / "tiger-s1" / "raw" / "world.json").read_text())["users"]
    rows = pq.read_table(folder / "runs" / "tiger-s1" / "per_user_test.parquet").to_pydict()
    for kind, values in analyses["by_user_kind"]["tiger"].items():
        mine = [h for u, h in zip(rows["user_id"], rows["hr@10"], strict=True) if world[u]["kind"] == kind]
        assert values["users"] == len(mine) and values["hr@10"] == pytest.approx(np.mean(mine))
    text = (folder / "out" / "report.md").read_text()
    assert "by planted user kind" in text and "Late fusion: is the top-1 item right" in text


def test_a_second_run_reuses_every_finished_row(suite):
    folder, args, _ = suite
    results = {p: p.read_bytes() for p in sorted((folder / "runs").glob("*/results.json"))}
    again = mmgr(*args).stdout
    assert again.count("train: reusing") == 3 and again.count("evaluate: reusing") == 3
    assert {p: p.read_bytes() for p in results} == results


def test_finished_only_summarizes_the_finished_runs_and_trains_nothing(suite):
    """A seed added to a row and not run yet is listed as unfinished; nothing is trained, nothing is created."""
    folder, args, _ = suite
    spec = yaml.safe_load((folder / "tiny.yaml").read_text())
    spec["rows"][1]["seeds"] = [1, 5]
    path = folder / "grown.yaml"
    path.write_text(yaml.safe_dump(spec))
    out = folder / "progress"
    stdout = mmgr("bench", "--suite", str(path), "--out", str(out), "--runs", str(folder / "runs"), "--records",
                  str(folder / "records"), "--no-progress", "--resamples", "200", "--finished-only").stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["unfinished"] == ["mgr-lf-s5"] and "left out: mgr-lf-s5" in stdout
    assert [r["seeds"] for r in summary["rows"]] == [[1, 2], [1]] and not (folder / "runs" / "mgr-lf-s5").exists()
    first = json.loads((folder / "out" / "summary.json").read_text())
    assert [r["metrics"] for r in summary["rows"]] == [r["metrics"] for r in first["rows"]]
    assert "Not finished yet, so not in this report: mgr-lf-s5" in (out / "report.md").read_text()


def test_each_finished_run_is_recorded_without_its_weights(suite):
    """The record keeps what the summary and report read (manifest, results, per-user metrics, logs, codes, the
    world's plan, the saliency measured on the trained model) and leaves out weights, features and data."""
    folder, _, _ = suite
    record, run = folder / "records" / "mgr-lf-s1", folder / "runs" / "mgr-lf-s1"
    kept = {p.relative_to(record).as_posix() for p in record.rglob("*") if p.is_file()}
    assert {"manifest.json", "results.json", "per_user_test.parquet", "raw/world.json", "codes/text.safetensors",
            "codes/image.safetensors", "analysis/saliency.json"} <= kept
    assert any(k.startswith("logs/") and k.endswith(".csv") for k in kept)
    assert not any(k.startswith(("checkpoints/", "features/")) or k == "model.safetensors" for k in kept)
    for name in ("manifest.json", "results.json", "per_user_test.parquet"):
        assert (record / name).read_bytes() == (run / name).read_bytes()
    assert sum(p.stat().st_size for p in record.rglob("*") if p.is_file()) < 0.2 * sum(
        p.stat().st_size for p in run.rglob("*") if p.is_file())


def test_records_stand_for_runs_this_machine_lacks(suite):
    """With the records and no run directories (another machine), the suite trains nothing and gives the same
    summary; a record made with other settings is not reused."""
    import shutil

    from mmgr.config import load_config
    from mmgr.pipeline import finished_record

    folder, _, _ = suite
    out = folder / "elsewhere"
    shutil.copytree(folder / "records", out / "records")
    stdout = mmgr("bench", "--suite", str(folder / "tiny.yaml"), "--out", str(out), "--runs", str(folder / "no-runs"),
                  "--records", str(out / "records"), "--no-progress", "--resamples", "200").stdout
    assert stdout.count("reusing its record") == 3
    assert not (folder / "no-runs").exists()
    first, again = (json.loads((f / "summary.json").read_text()) for f in (folder / "out", out))
    assert [r["metrics"] for r in again["rows"]] == [r["metrics"] for r in first["rows"]]
    assert again["rows"][1]["vs_baseline"] == first["rows"][1]["vs_baseline"]
    assert again["analyses"] == first["analyses"]
    spec = yaml.safe_load((folder / "tiny.yaml").read_text())
    settings = [*spec["shared"], "seed=1"]
    same = load_config(["configs/synthetic.yaml", "configs/tiger.yaml"], settings)
    other = load_config(["configs/synthetic.yaml", "configs/tiger.yaml"], [*settings, "training.lr=0.5"])
    assert finished_record(same, out / "records" / "tiger-s1") and not finished_record(other,
                                                                                out / "records" / "tiger-s1")


def test_only_trains_the_selected_runs_and_reuses_the_rest(suite):
    """`--only ROW-sSEED` trains that run alone (a suite split across processes or machines); the other runs are
    reused, unchanged; a name that is no row or run of the suite is an error naming the rows."""
    folder, _, _ = suite
    spec = yaml.safe_load((folder / "tiny.yaml").read_text())
    spec["rows"][1]["seeds"] = [1, 6]
    path = folder / "split.yaml"
    path.write_text(yaml.safe_dump(spec))
    before = {p: p.read_bytes() for p in sorted((folder / "runs").glob("*-s[12]/results.json"))}
    args = ["bench", "--suite", str(path), "--out", str(folder / "split"), "--runs", str(folder / "runs"),
            "--records", str(folder / "split-records"), "--no-progress", "--resamples", "200"]
    stdout = mmgr(*args, "--only", "mgr-lf-s6").stdout
    assert "train: reusing" not in stdout and (folder / "runs" / "mgr-lf-s6" / "results.json").is_file()
    assert {p: p.read_bytes() for p in before} == before
    summary = json.loads((folder / "split" / "summary.json").read_text())
    assert [r["seeds"] for r in summary["rows"]] == [[1, 2], [1, 6]] and summary["unfinished"] == []
    wrong = mmgr(*args, "--only", "mgr-lf-s9", check=False)
    assert wrong.returncode != 0 and "'mgr-lf-s9': not a row or run of suite 'tiny'" in wrong.stderr + wrong.stdout


def test_saliency_is_measured_once_per_trained_weights(suite):
    """A run's saliency file is kept while it measured the run's weights, measured again when they changed (the
    run trained again), and absent for a run of one modality."""
    from mmgr.report.saliency import record_saliency

    folder, _, _ = suite
    run = folder / "runs" / "mgr-lf-s1"
    path = run / "analysis" / "saliency.json"
    first, stamp = json.loads(path.read_text()), path.stat().st_mtime_ns
    assert record_saliency(run) == path and path.stat().st_mtime_ns == stamp
    path.write_text(json.dumps({**first, "weights": "other weights", "rows": -1}))
    assert record_saliency(run) == path and json.loads(path.read_text()) == first
    assert record_saliency(folder / "runs" / "tiger-s1") is None
    assert not (folder / "runs" / "tiger-s1" / "analysis" / "saliency.json").exists()


def test_weights_with_nothing_to_measure_are_marked_not_measured_again(suite, monkeypatch):
    """Weights whose histories give nothing to measure leave a marker naming them: the run is not loaded again to
    find that out, and the analyses read no shares from it."""
    from mmgr.evaluation.modality import SALIENCY, read_measured
    from mmgr.report import saliency

    folder, _, _ = suite
    run = folder / "runs" / "mgr-lf-s1"
    path = run / "analysis" / "saliency.json"
    kept = path.read_bytes()
    calls = []
    monkeypatch.setattr(saliency, "run_saliency", calls.append)                 # measures nothing (returns None)
    try:
        path.write_text(json.dumps({**json.loads(kept), "weights": "other weights"}))
        assert saliency.record_saliency(run) is None and saliency.record_saliency(run) is None
        assert calls == [run] and json.loads(path.read_text())["rows"] == 0 and read_measured(run, SALIENCY) is None
    finally:
        path.write_bytes(kept)
