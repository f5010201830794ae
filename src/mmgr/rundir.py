"""Run directories: every artifact of a run plus `manifest.json` (config, dataset fingerprint, split, seed,
package version, git commit, creation time), always written atomically."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mmgr
from mmgr.config import Config, load_config
from mmgr.errors import MmgrError
from mmgr.io import write_json_atomic

MANIFEST = "manifest.json"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def git_commit() -> str | None:
    """The commit of the mmgr source tree, when it is a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(mmgr.__file__).parent, capture_output=True,
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
            "mmgr_version": mmgr.__version__, "git_commit": git_commit(), "created": now_iso(),
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

    def record(self, stage: str, info: dict[str, Any], **top_level: Any) -> None:
        """Add a stage's summary (and any top-level keys such as `dataset`) to the manifest atomically."""
        manifest = self.manifest()
        manifest["stages"][stage] = {**info, "finished": now_iso()}
        manifest.update(top_level)
        write_json_atomic(self.manifest_path, manifest)
