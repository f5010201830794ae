"""The T5 rows of the script benchmarks (`benchmarks/t5_rows.py`) reuse a finished row, also one whose recipe fell
back to the modalities the data has (the manifest records the narrowed config); a row whose settings changed trains
afresh, its old results removed first so that a kill cannot leave them standing for the new settings."""

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
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))            # it imports its siblings (`common`, `t5_rows`)
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def rows(monkeypatch):
    return load_benchmark("t5_rows", monkeypatch)


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


def test_a_fallback_row_is_reused(tmp_path, rows, monkeypatch):
    config = ef()                                                   # fused SIDs: no images here, so text
    run = finished_run(tmp_path, config)
    assert run.manifest()["config"]["model"]["modalities"] == ["text"]
    monkeypatch.setattr(rows, "run_recipe", lambda *a, **k: pytest.fail("a finished row was trained again"))
    rows.ensure_row(run, config, "fallback row")


def test_a_row_with_other_settings_trains_afresh_without_its_old_results(tmp_path, rows, monkeypatch):
    run = finished_run(tmp_path, ef())
    (run.path / "checkpoints").mkdir()
    other = ef("model.d_model=32")
    assert not rows.finished(run, rows.fitted_config(run, other))
    trained = []
    monkeypatch.setattr(rows, "run_recipe", lambda config, path, **_: trained.append(config))
    rows.ensure_row(run, other, "changed row")                       # as if killed at once: nothing written
    assert trained == [other]
    assert not (run.path / "results.json").exists() and not (run.path / "checkpoints").exists()
