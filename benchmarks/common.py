"""Shared by every benchmark script: one JSON results shape (see DESIGN.md), with the reproducing command."""

from __future__ import annotations

import os
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the CLI does (see mmgr/cli/app.py)

from mmgr.devices import describe_device  # noqa: E402
from mmgr.io import write_json_atomic  # noqa: E402
from mmgr.rundir import git_commit  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
SHARED_DATA = Path(os.environ.get("MMGR_SHARED_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))


def command() -> str:
    """The invocation, from the repository root."""
    script = Path(sys.argv[0]).resolve().relative_to(RESULTS.parents[1])
    return "python " + shlex.join([str(script), *sys.argv[1:]])


def write_result(benchmark: str, dataset: str, method: str, metrics: dict[str, Any], *, wall_seconds: float,
                 config: dict[str, Any], reference: dict[str, Any] | None = None, split: str | None = None,
                 extra: dict[str, Any] | None = None, out: Path | None = None) -> Path:
    """Write <out>/<benchmark>-<dataset>-<method>.json (`out`: benchmarks/results by default)."""
    result = {"benchmark": benchmark, "dataset": dataset, "method": method, "split": split, "metrics": metrics,
              "reference": reference, "device": describe_device(), "wall_seconds": round(wall_seconds, 3),
              "command": command(), "config": config, "commit": git_commit(),
              "created": datetime.now(UTC).isoformat(timespec="seconds"), **(extra or {})}
    path = Path(out or RESULTS) / f"{benchmark}-{dataset}-{method}.json"
    write_json_atomic(path, _relative(result))
    print(f"wrote {path}")
    return path


def _relative(value: Any) -> Any:
    """Paths under the repository root written relative to it: results files name no machine paths."""
    root = str(RESULTS.parents[1]) + "/"
    if isinstance(value, str):
        return value.replace(root, "")
    if isinstance(value, dict):
        return {key: _relative(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_relative(item) for item in value]
    return value
