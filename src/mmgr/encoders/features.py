"""Features in a run directory: `features/<modality>.safetensors` (`vectors` float32[N, D], `missing` uint8[N])
with the model id, the dataset fingerprint and the encoding summary in its metadata."""

from __future__ import annotations

import difflib
import json
from pathlib import Path

import numpy as np

from mmgr.encoders.base import Features
from mmgr.errors import MmgrError
from mmgr.io import read_arrays, write_arrays_atomic

FEATURES_DIR = "features"
FEATURE_MODALITIES = ("text", "image", "fused")   # the modalities `mmgr encode` writes vectors for


def features_path(run_path: Path, modality: str) -> Path:
    return Path(run_path) / FEATURES_DIR / f"{modality}.safetensors"


def save_features(run_path: Path, features: Features, fingerprint: str) -> Path:
    path = features_path(run_path, features.modality)
    metadata = {"modality": features.modality, "model_id": features.model_id, "dataset_fingerprint": fingerprint,
                "info": json.dumps(features.info)}
    write_arrays_atomic(path, {"vectors": features.vectors.astype(np.float32),
                               "missing": features.missing.astype(np.uint8)}, metadata)
    return path


def load_features(run_path: Path, modality: str, fingerprint: str | None = None) -> Features:
    """Load one modality's features; refuse features computed for other data than the run's."""
    if modality not in FEATURE_MODALITIES:   # caption / interests are text, encoded through `--modality text`
        raise MmgrError(unknown_modality(modality, FEATURE_MODALITIES, "features are"))
    arrays, metadata = read_arrays(features_path(run_path, modality), fingerprint,
                                   f"no {modality} features; run `mmgr encode {run_path} --modality {modality}`")
    return Features(metadata.get("modality", modality), metadata.get("model_id", "?"), arrays["vectors"],
                    arrays["missing"].astype(bool), json.loads(metadata.get("info", "{}")))


def unknown_modality(modality: str, choices: tuple[str, ...], what: str = "choose one of") -> str:
    """'unknown modality X; <what> a, b, c' plus the closest valid name, if one is close (never a command that
    would fail again)."""
    close = difflib.get_close_matches(modality, choices, n=1, cutoff=0.5)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown modality {modality!r}{hint}; {what} {', '.join(choices)}"
