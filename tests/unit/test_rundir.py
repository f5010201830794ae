import json

import pytest

from mmgr.config import load_config
from mmgr.errors import MmgrError
from mmgr.io import atomic_path, write_bytes_atomic
from mmgr.rundir import RunDir


def test_manifest_holds_config_version_seed_and_stages(tmp_path):
    config = load_config(overrides=["seed=3"])
    run = RunDir.create(tmp_path / "run", config)
    run.record("data", {"files": {"items": "items.parquet"}}, dataset={"fingerprint": "abc"})
    manifest = run.manifest()
    assert manifest["seed"] == 3 and manifest["mmgr_version"]
    assert manifest["stages"]["data"]["files"] == {"items": "items.parquet"}
    assert manifest["dataset"]["fingerprint"] == "abc"
    assert run.config() == config
    assert [p.name for p in run.path.iterdir()] == ["manifest.json"]  # no temp files left behind


def test_atomic_write_leaves_old_file_when_interrupted(tmp_path):
    target = tmp_path / "f.json"
    write_bytes_atomic(target, b'{"ok": 1}')

    with pytest.raises(KeyboardInterrupt), atomic_path(target) as tmp:
        tmp.write_bytes(b'{"half": ')
        raise KeyboardInterrupt
    assert json.loads(target.read_text()) == {"ok": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_not_a_run_directory(tmp_path):
    with pytest.raises(MmgrError, match="not a run directory"):
        RunDir(tmp_path).manifest()
