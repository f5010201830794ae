"""Content-addressed caches that survive interrupted runs.

A cache folder holds append-only shards, each written atomically: `*.safetensors` with `keys` (uint8[n, 32],
sha256 content addresses) and `vectors` (float32[n, D]) for features, `*.jsonl` lines `{"key", "value"}` for
generated text (captions, interest tags). Re-running computes only keys no shard holds yet.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from mmgr.io import atomic_path, write_bytes_atomic


def default_cache_dir() -> Path:
    return Path(os.environ.get("MMGR_CACHE", Path.home() / ".cache" / "mmgr"))


def _shard_name(suffix: str) -> str:
    return f"shard-{uuid.uuid4().hex}{suffix}"


class VectorCache:
    """key (32 bytes) -> float32 vector, in safetensors shards under `folder`."""

    def __init__(self, folder: Path | str) -> None:
        self.folder = Path(folder)

    def get(self, keys: list[bytes]) -> dict[bytes, np.ndarray]:
        wanted = set(keys)
        found: dict[bytes, np.ndarray] = {}
        for shard in sorted(self.folder.glob("shard-*.safetensors")) if self.folder.is_dir() else []:
            tensors = load_file(shard)
            for key, vector in zip(map(bytes, tensors["keys"]), tensors["vectors"], strict=True):
                if key in wanted:
                    found[key] = vector
        return found

    def put(self, keys: list[bytes], vectors: np.ndarray) -> None:
        if not keys:
            return
        tensors = {"keys": np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), 32),
                   "vectors": np.ascontiguousarray(vectors, dtype=np.float32)}
        with atomic_path(self.folder / _shard_name(".safetensors")) as tmp:
            save_file(tensors, str(tmp))


class TextCache:
    """key (32 bytes) -> JSON value (a caption string, a list of tags), in JSON-lines shards under `folder`."""

    def __init__(self, folder: Path | str) -> None:
        self.folder = Path(folder)

    def get(self, keys: list[bytes]) -> dict[bytes, object]:
        wanted = {key.hex(): key for key in keys}
        found: dict[bytes, object] = {}
        for shard in sorted(self.folder.glob("shard-*.jsonl")) if self.folder.is_dir() else []:
            for line in shard.read_text(encoding="utf-8").splitlines():
                record = json.loads(line)
                if record["key"] in wanted:
                    found[wanted[record["key"]]] = record["value"]
        return found

    def put(self, keys: list[bytes], values: list[object]) -> None:
        if not keys:
            return
        lines = "".join(json.dumps({"key": k.hex(), "value": v}, ensure_ascii=False) + "\n"
                        for k, v in zip(keys, values, strict=True))
        write_bytes_atomic(self.folder / _shard_name(".jsonl"), lines.encode("utf-8"))
