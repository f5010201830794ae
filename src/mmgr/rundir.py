"""Run directories: every artifact of a run plus `manifest.json` (config, dataset fingerprint, split, seed,
package version, git commit, creation time), always written atomically.

A stage that writes a run holds `RUN/.lock` (an exclusive `flock`) while it runs (`RunDir.writing`), so a second
process that would write the same run at the same time is refused with the first one's pid instead of the two
interleaving their artifacts. The lock is released when the holder exits, however it exits (no stale locks).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # not POSIX (Windows): run directories are not locked
    fcntl = None  # type: ignore[assignment]

from mmgr.config import Config, load_config
from mmgr.errors import MmgrError
from mmgr.io import write_json_atomic
from mmgr.version import __version__

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"
LOCK = ".lock"
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK")   # set by DDP launchers (Lightning, torchrun) in every rank

_held: dict[Path, int] = {}   # run directories this process holds the lock of -> nesting depth


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def git_commit() -> str | None:
    """The commit of the mmgr source tree, when it is a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


class RunDir:
    """A folder with a manifest; stages record what they wrote with `record`."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    def exists(self) -> bool:
        return self.manifest_path.is_file()

    @classmethod
    def create(cls, path: Path | str, config: Config) -> RunDir:
        run = cls(path)
        run.path.mkdir(parents=True, exist_ok=True)
        write_json_atomic(run.manifest_path, {
            "mmgr_version": __version__, "git_commit": git_commit(), "created": now_iso(),
            "seed": config.seed, "config": config.model_dump(mode="json"), "stages": {},
        })
        return run

    def manifest(self) -> dict[str, Any]:
        if not self.exists():
            raise MmgrError(f"{self.path} is not a run directory (no {MANIFEST}); create one with `mmgr data import`")
        try:
            return json.loads(self.manifest_path.read_text())
        except json.JSONDecodeError as exc:
            raise MmgrError(f"{self.manifest_path}:{exc.lineno}: not valid JSON ({exc.msg})") from None

    def config(self, overrides: list[str] | tuple[str, ...] = ()) -> Config:
        """The run's saved config with `key=value` overrides applied."""
        return load_config(None, overrides, base=self.manifest()["config"])

    @contextmanager
    def writing(self, stage: str) -> Iterator[RunDir]:
        """Hold the run's write lock for `stage` (re-entrant within a process; the directory is created if needed and
        removed again if the stage fails before writing anything into it). Raises `MmgrError` naming the holder's pid
        when another process writes this run."""
        key = self.path.resolve()
        if key in _held or fcntl is None or _secondary_rank():
            _held[key] = _held.get(key, 0) + 1
            try:
                yield self
            finally:
                _release_depth(key)
            return
        created = [p for p in (self.path, *self.path.parents) if not p.exists()]   # deepest first
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise MmgrError(f"{self.path}: cannot create the run directory ({exc.strerror or exc})") from None
        fd = _acquire(self.path, stage)
        _held[key] = 1
        try:
            yield self
        except BaseException:
            if created:
                _remove_if_only_lock(self.path, created)
            raise
        finally:
            del _held[key]
            if fd is not None:
                os.close(fd)   # releases the lock; the file stays (unlinking it would let two processes hold one run)

    def record(self, stage: str, info: dict[str, Any], **top_level: Any) -> None:
        """Add a stage's summary (and any top-level keys such as `dataset`) to the manifest atomically."""
        manifest = self.manifest()
        manifest["stages"][stage] = {**info, "finished": now_iso()}
        manifest.update(top_level)
        write_json_atomic(self.manifest_path, manifest)


def _secondary_rank() -> bool:
    """Whether this process is a non-zero rank of a distributed job: the rank-0 process holds the run's lock."""
    return any(os.environ.get(name, "0") not in ("", "0") for name in RANK_VARIABLES)


def _release_depth(key: Path) -> None:
    _held[key] -= 1
    if not _held[key]:
        del _held[key]


def _acquire(folder: Path, stage: str) -> int | None:
    """An open descriptor of `folder/.lock` holding an exclusive lock, with this process's pid and stage in it (None
    where the file system cannot lock)."""
    try:
        fd = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise MmgrError(f"{folder / LOCK}: cannot open the run's lock file ({exc.strerror or exc}); is the run "
                        "directory writable?") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        raise MmgrError(f"{folder} is being written by another mmgr process ({holder}); wait for it to finish or "
                        "stop it, then run this again") from None
    except OSError as exc:   # a file system without locks (some network mounts): run unlocked, say so
        os.close(fd)
        log.warning("%s: cannot lock the run directory (%s); running without the write lock", folder / LOCK, exc)
        return None
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps({"pid": os.getpid(), "stage": stage, "since": now_iso()}).encode())
    return fd


def _holder(fd: int) -> str:
    """'pid N, `mmgr STAGE` since T' from a lock file, as far as it says."""
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        info = {}
    if not isinstance(info, dict) or "pid" not in info:
        return "pid unknown"
    stage = f", `mmgr {info['stage']}`" if info.get("stage") else ""
    since = f" since {info['since']}" if info.get("since") else ""
    return f"pid {info['pid']}{stage}{since}"


def _remove_if_only_lock(folder: Path, created: list[Path]) -> None:
    """Undo the folders a failed stage created (`created`, deepest first): remove the run directory when the lock
    file is all it holds, then the parents made for it while they are empty."""
    try:
        if [p.name for p in folder.iterdir()] == [LOCK]:
            (folder / LOCK).unlink()
        for path in created:
            path.rmdir()
    except OSError:   # something else is in there: keep it
        pass
