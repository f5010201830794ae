"""The benchmark scripts reuse a finished row, also one whose recipe fell back to the modalities the data has (the
manifest records the narrowed config); a row whose settings changed trains afresh, its old results removed first so
that a kill cannot leave them standing for the new settings."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from mmgr.config import load_config
from mmgr.pipeline import fit_to_data
from mmgr.rundir import RunDir
from tests.helpers import text_only_run

ROOT = Path(__file__).resolve().parents[2]


def load_benchmark(name: str, monkeypatch):
    """benchmarks/<name>.py, loaded by path (its folder stays off sys.path for other tests)."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))            # it imports its siblings (`common`, `mgr`)
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def mgr(monkeypatch):
    return load_benchmark("mgr", monkeypatch)


def finished_run(folder: Path, config):
    """A run whose manifest says it trained and evaluated `config` as the pipeline records it (fitted)."""
    run, dataset = text_only_run(folder)
    fitted, reason = fit_to_data(config, dataset)
    rundir = RunDir(run.path)
    rundir.record("pipeline", {"fallback": reason}, config=fitted.model_dump(mode="json"))
    rundir.record("train", {"steps": 10})
    rundir.record("evaluate", {})
    (rundir.path / "results.json").write_text(json.dumps({"test": {}, "valid": {}}))
    return rundir


def ef(*overrides: str):
    return load_config([ROOT / "configs" / "mgr-ef.yaml"], ["training.max_steps=10", *overrides])


def test_a_fallback_row_is_reused(tmp_path, mgr, monkeypatch):
    config = ef()                                                   # fused SIDs: no images here, so text
    run = finished_run(tmp_path, config)
    assert run.manifest()["config"]["model"]["modalities"] == ["text"]
    monkeypatch.setattr(mgr, "run_recipe", lambda *a, **k: pytest.fail("a finished row was trained again"))
    mgr.ensure_row(run, config, "fallback row")


def test_a_row_with_other_settings_trains_afresh_without_its_old_results(tmp_path, mgr, monkeypatch):
    run = finished_run(tmp_path, ef())
    (run.path / "checkpoints").mkdir()
    other = ef("model.d_model=32")
    assert not mgr.finished(run, mgr.fitted_config(run, other))
    trained = []
    monkeypatch.setattr(mgr, "run_recipe", lambda config, path, **_: trained.append(config))
    mgr.ensure_row(run, other, "changed row")                       # as if killed at once: nothing written
    assert trained == [other]
    assert not (run.path / "results.json").exists() and not (run.path / "checkpoints").exists()


def test_the_cost_of_a_resumed_row_counts_only_the_steps_its_last_process_timed(monkeypatch):
    syngr = load_benchmark("syngr", monkeypatch)
    train = {"steps": 800, "train_seconds": 400.0, "train_examples": 12800}
    rows = {"mgr-lfpp": {"train": {**train, "resumed_from_step": 0}},
            "syngr": {"train": {**train, "resumed_from_step": 400}}}       # 400 s for its last 400 steps
    cost = syngr.cost(rows)
    assert cost["mgr-lfpp"]["seconds_per_step"] == 0.5 and cost["syngr"]["seconds_per_step"] == 1.0
    assert cost["syngr"]["seconds_per_epoch"] == 100.0 and cost["syngr"]["epoch_cost_vs_mgr_lfpp"] == 2.0
