"""The benchmark scripts reuse a finished row, also one whose recipe fell back to the modalities the data has (the
manifest records the narrowed config), and retrain a row whose settings changed."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from mmgr.config import load_config
from mmgr.pipeline import fit_to_data
from mmgr.rundir import RunDir
from tests.unit.test_pipeline_fallback import text_only_run

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def mgr():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import mgr
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return mgr


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


def test_a_fallback_row_is_reused(tmp_path, mgr):
    config = load_config([ROOT / "configs" / "mgr-ef.yaml"], ["training.max_steps=10"])   # fused: no images here
    run = finished_run(tmp_path, config)
    assert run.manifest()["config"]["model"]["modalities"] == ["text"]
    assert mgr.finished(run, config)
    mgr.ensure_row(run, config, "fallback row")                                  # reused: nothing trains


def test_a_row_with_other_settings_is_not_finished(tmp_path, mgr):
    config = load_config([ROOT / "configs" / "mgr-ef.yaml"], ["training.max_steps=10"])
    run = finished_run(tmp_path, config)
    assert not mgr.finished(run, config.model_copy(update={
        "training": config.training.model_copy(update={"max_steps": 20})}))
    assert not mgr.finished(run, load_config([ROOT / "configs" / "mgr-ef.yaml"], ["training.max_steps=10",
                                                                                   "model.d_model=32"]))
