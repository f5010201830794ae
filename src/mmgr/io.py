"""Atomic artifact writes (temp file in the same folder + rename) and content fingerprints."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from safetensors import safe_open
from safetensors.numpy import save_file

from mmgr.errors import MmgrError


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temp path beside `path`; rename it over `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; artifacts get the usual permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def write_json_atomic(path: Path, obj: Any) -> None:
    write_bytes_atomic(path, (json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n").encode())


def write_parquet_atomic(path: Path, table: pa.Table) -> None:
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def write_arrays_atomic(path: Path, arrays: dict[str, np.ndarray], metadata: dict[str, str]) -> None:
    """numpy arrays + string metadata as one safetensors file, atomically."""
    with atomic_path(path) as tmp:
        save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp), metadata=metadata)


def read_arrays(path: Path, fingerprint: str | None, missing_hint: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """(arrays, metadata) of a safetensors artifact; refuses one computed for another dataset than `fingerprint`."""
    if not Path(path).is_file():
        raise MmgrError(f"{path}: {missing_hint}")
    with safe_open(str(path), framework="numpy") as handle:
        metadata = handle.metadata() or {}
        arrays = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 - safe_open API
    if fingerprint is not None and metadata.get("dataset_fingerprint") != fingerprint:
        raise MmgrError(f"{path} was computed for another dataset (fingerprint mismatch); re-run the stage that "
                        "wrote it")
    return arrays, metadata


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
