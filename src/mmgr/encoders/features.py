"""Features in a run directory: `features/<modality>.safetensors` (`vectors` float32[N, D], `missing` uint8[N])
with the model id, the dataset fingerprint and the encoding summary in its metadata."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from mmgr.encoders.base import Features
from mmgr.errors import MmgrError
from mmgr.io import atomic_path

FEATURES_DIR = "features"


def features_path(run_path: Path, modality: str) -> Path:
    return Path(run_path) / FEATURES_DIR / f"{modality}.safetensors"


def save_features(run_path: Path, features: Features, fingerprint: str) -> Path:
    path = features_path(run_path, features.modality)
    metadata = {"modality": features.modality, "model_id": features.model_id, "dataset_fingerprint": fingerprint,
                "info": json.dumps(features.info)}
    tensors = {"vectors": np.ascontiguousarray(features.vectors, dtype=np.float32),
               "missing": features.missing.astype(np.uint8)}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return path


def load_features(run_path: Path, modality: str, fingerprint: str | None = None) -> Features:
    """Load one modality's features; refuse features computed for other data than the run's."""
    path = features_path(run_path, modality)
    if not path.is_file():
        raise MmgrError(f"{path}: no {modality} features; run `mmgr encode {run_path} --modality {modality}`")
    with safe_open(str(path), framework="numpy") as handle:
        metadata = handle.metadata() or {}
        vectors, missing = handle.get_tensor("vectors"), handle.get_tensor("missing").astype(bool)
    if fingerprint is not None and metadata.get("dataset_fingerprint") != fingerprint:
        raise MmgrError(f"{path} was computed for another dataset (fingerprint mismatch); re-run `mmgr encode`")
    return Features(metadata.get("modality", modality), metadata.get("model_id", "?"), vectors, missing,
                    json.loads(metadata.get("info", "{}")))
