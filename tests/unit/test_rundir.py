import json
import os
import subprocess
import sys

import pytest

from mmgr.config import load_config
from mmgr.errors import MmgrError
from mmgr.io import atomic_path, write_bytes_atomic
from mmgr.rundir import LOCK, RANK_VARIABLES, RunDir


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


HOLD = """
import sys, time
from mmgr.rundir import RunDir
with RunDir(sys.argv[1]).writing("train"):
    print("locked", flush=True)
    time.sleep(60)
"""
TRY = """
import sys
from mmgr.errors import MmgrError
from mmgr.rundir import RunDir
try:
    with RunDir(sys.argv[1]).writing("encode"):
        print("acquired")
except MmgrError as exc:
    print(exc)
    sys.exit(1)
"""


def _try_lock(path, **env) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k not in RANK_VARIABLES}
    return subprocess.run([sys.executable, "-c", TRY, str(path)], capture_output=True, text=True, timeout=60,
                          env={**environ, **env})


def test_a_second_process_writing_the_run_is_refused_with_the_holders_pid(tmp_path):
    run = RunDir.create(tmp_path / "run", load_config())
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run.path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        refused = _try_lock(run.path)
        assert refused.returncode == 1
        assert f"{run.path} is being written by another mmgr process (pid {holder.pid}, `mmgr train`" in refused.stdout
    finally:
        holder.kill()
        holder.wait()
    assert _try_lock(run.path).stdout.strip() == "acquired"     # a killed holder leaves no stale lock


def test_the_lock_is_reentrant_in_one_process_and_names_this_process(tmp_path):
    run = RunDir.create(tmp_path / "run", load_config())
    with run.writing("run"):
        with run.writing("train"):          # a pipeline stage inside `mmgr run`
            info = json.loads((run.path / LOCK).read_text())
            assert info["pid"] == os.getpid() and info["stage"] == "run"
            refused = _try_lock(run.path)
            assert refused.returncode == 1 and f"(pid {os.getpid()}, `mmgr run`" in refused.stdout
        assert _try_lock(run.path).returncode == 1   # still held by the outer stage
    assert _try_lock(run.path).stdout.strip() == "acquired"


def test_distributed_ranks_other_than_zero_share_the_parents_lock(tmp_path):
    run = RunDir.create(tmp_path / "run", load_config())
    with run.writing("train"):
        assert _try_lock(run.path, LOCAL_RANK="1").stdout.strip() == "acquired"
        assert _try_lock(run.path, LOCAL_RANK="0").returncode == 1


def test_a_stage_that_fails_in_a_new_folder_leaves_no_folder(tmp_path):
    target = tmp_path / "runs" / "new"
    with pytest.raises(MmgrError, match="bad input"), RunDir(target).writing("import"):
        raise MmgrError("bad input")
    assert not (tmp_path / "runs").exists()
    with RunDir(target).writing("import"):
        (target / "items.parquet").write_bytes(b"x")
    assert sorted(p.name for p in target.iterdir()) == [LOCK, "items.parquet"]
