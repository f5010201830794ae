"""The encoder protocol and the driver that runs any encoder over a catalog through the content cache.

An encoder declares what it reads from an item (`inputs`: None where the item lacks that modality), how an input
is identified for caching (`content_key`), and how a batch of inputs becomes vectors (`encode`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from mmgr.data.images import UnreadableImage
from mmgr.errors import MmgrError
from mmgr.progress import progress_bar

EXAMPLES = 3   # unreadable inputs named in an encoding summary


class ItemEncoder(Protocol):
    """Turns item content of one modality into fixed-size vectors."""

    modality: str   # text | image | fused | ...
    model_id: str   # stable name of the model (and its weights)
    version: str    # what else changes the output (template, preprocessing); part of the cache key
    dim: int

    def inputs(self, items: pa.Table) -> list[Any | None]:
        """One input per item (text, image path, ...); None where the item lacks this modality."""
        ...

    def content_key(self, item_input: Any) -> bytes:
        """Bytes that identify the input's content (the text itself, an image file's bytes digest, ...)."""
        ...

    def encode(self, batch: Sequence[Any]) -> np.ndarray:
        """float32[len(batch), dim]. An encoder whose inputs can turn out unreadable (image files) raises an
        `MmgrError` here, and may also offer `encode_masked(batch) -> (vectors, {row: reason})`, which
        `encode_items` uses to mask those rows instead of failing."""
        ...


@dataclass
class Features:
    """Vectors for every catalog item; rows of `missing` items are zeros and must be masked downstream."""

    modality: str
    model_id: str
    vectors: np.ndarray   # (N, D) float32
    missing: np.ndarray   # (N,) bool
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])


def cache_key(model_id: str, version: str, content: bytes) -> bytes:
    """32-byte content address: model x version x content."""
    return hashlib.sha256(model_id.encode() + b"\0" + version.encode() + b"\0" + content).digest()


class Cache(Protocol):
    def get(self, keys: list[bytes]) -> dict[bytes, Any]: ...

    def put(self, keys: list[bytes], values: Any) -> None: ...


def run_cached(inputs: list[Any], keys: list[bytes], compute: Callable[[list[Any]], Any], cache: Cache | None,
               chunk_size: int, description: str, progress: bool = True,
               cacheable: Callable[[Any], bool] | None = None) -> tuple[list[Any], int]:
    """Outputs for `inputs` (aligned), computing only keys the cache lacks, chunk by chunk; each finished chunk
    is cached at once so an interrupted run resumes where it stopped (except outputs `cacheable` refuses: failures
    are computed again next time). Returns (outputs, number computed)."""
    found = cache.get(keys) if cache is not None else {}
    outputs = [found.get(key) for key in keys]
    todo = [i for i, key in enumerate(keys) if key not in found]
    with progress_bar(description, total=len(todo), enabled=progress) as advance:
        for start in range(0, len(todo), chunk_size):
            chunk = todo[start:start + chunk_size]
            values = compute([inputs[i] for i in chunk])
            if cache is not None:
                keep = [j for j in range(len(chunk)) if cacheable is None or cacheable(values[j])]
                kept = values if len(keep) == len(chunk) else (
                    values[keep] if isinstance(values, np.ndarray) else [values[j] for j in keep])
                cache.put([keys[chunk[j]] for j in keep], kept)
            for i, value in zip(chunk, values, strict=True):
                outputs[i] = value
            advance(len(chunk))
    return outputs, len(todo)


def encode_items(encoder: ItemEncoder, items: pa.Table, cache: Cache | None = None, chunk_size: int = 256,
                 progress: bool = True) -> Features:
    """Encode every item that has this modality (the rest are zero rows flagged `missing`), through the cache.
    Inputs that turn out unreadable (an image file gone or corrupt since import) are masked too, and counted with
    their reasons in the summary (`unreadable`, `unreadable_examples`); they are never cached."""
    inputs = encoder.inputs(items)
    failed: dict[Any, str] = {}   # input -> why it is unreadable
    present, keys = [], []
    for i, item_input in enumerate(inputs):
        if item_input is None:
            continue
        try:
            keys.append(cache_key(encoder.model_id, encoder.version, encoder.content_key(item_input)))
        except UnreadableImage as exc:
            failed[item_input] = exc.reason
            continue
        present.append(i)

    def compute(batch: list[Any]) -> np.ndarray:
        masked = getattr(encoder, "encode_masked", None)
        out, bad = masked(batch) if masked is not None else (encoder.encode(batch), {})
        out = _checked(encoder, out, len(batch))
        if bad:
            out = out.copy()
            for row, reason in bad.items():
                failed[batch[row]] = reason
                out[row] = np.nan   # marks the row unreadable (checked model outputs are finite)
        return out

    outputs, computed = run_cached([inputs[i] for i in present], keys, compute, cache, chunk_size,
                                   f"{encoder.modality} ({encoder.model_id})", progress,
                                   cacheable=lambda vector: bool(np.isfinite(vector).all()))
    readable = [(i, out) for i, out in zip(present, outputs, strict=True) if np.isfinite(out).all()]
    vectors = np.zeros((len(inputs), encoder.dim), dtype=np.float32)
    missing = np.ones(len(inputs), dtype=bool)
    if readable:
        rows = [i for i, _ in readable]
        vectors[rows] = np.stack([out for _, out in readable])
        missing[rows] = False
    info = {"model_id": encoder.model_id, "version": encoder.version, "dim": encoder.dim, "items": len(inputs),
            "missing": int(missing.sum()), "computed": computed, "from_cache": len(present) - computed}
    unreadable = [i for i, x in enumerate(inputs) if x is not None and missing[i]]
    if unreadable:
        ids = items["item_id"].to_pylist() if "item_id" in items.column_names else list(range(len(inputs)))
        info["unreadable"] = len(unreadable)
        info["unreadable_examples"] = [f"item {ids[i]!r}: {failed.get(inputs[i], 'unreadable')}"
                                       for i in unreadable[:EXAMPLES]]
    return Features(encoder.modality, encoder.model_id, vectors, missing, info)


def _checked(encoder: ItemEncoder, out: np.ndarray, rows: int) -> np.ndarray:
    out = np.asarray(out, dtype=np.float32)
    if out.shape != (rows, encoder.dim):
        raise MmgrError(f"{encoder.model_id} returned shape {out.shape}, expected {(rows, encoder.dim)}")
    if not np.isfinite(out).all():
        raise MmgrError(f"{encoder.model_id} produced NaN or infinite features; check the model and inputs")
    return out
