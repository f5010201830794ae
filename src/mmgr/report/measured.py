"""Analyses measured once on a trained multimodal run's weights and kept in the run (`analysis/<name>.json`, which
its record keeps and the suite's analyses read): each file names the weights it measured (their SHA-256), so a run
trained again is measured again, and weights with nothing to measure leave a marker (`NOTHING`) so the run is not
loaded again to find that out."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mmgr.evaluation.modality import model_settings, read_measured
from mmgr.io import sha256_file, write_json_atomic
from mmgr.weights import BEST

NOTHING = {"rows": 0}
Measure = Callable[[Path], dict[str, Any] | None]     # run -> its summary ("rows" > 0), or None: nothing to measure


def measure_once(run: Path, relative: Path, measure: Measure) -> Path | None:
    """`measure(run)` of a trained run with two modalities or more, written into `run / relative` unless that file
    already names these weights; that path, or None when the run has nothing to measure."""
    path, weights = run / relative, run / BEST
    if len(model_settings(run).get("modalities", [])) < 2 or not weights.is_file():
        return None
    digest = sha256_file(weights)
    if not (path.is_file() and json.loads(path.read_text()).get("weights") == digest):
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, {**(measure(run) or NOTHING), "weights": digest})
    return path if read_measured(run, relative) else None
