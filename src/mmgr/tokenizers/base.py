"""The tokenizer contract (scikit-learn style) and its file format.

A tokenizer is an estimator: settings in `__init__`, `fit(X) -> self`, learned state in attributes ending in `_`,
`transform(X) -> int64[N, L]`, `inverse_transform(codes) -> float32[N, D]`, and `candidates(X, k)` giving each
item's k best codes at the last level (used to resolve collisions by reassignment). `save(stem)` writes
`stem.safetensors` (arrays) + `stem.json` (class, format version, settings, shapes); `load_tokenizer(stem)` refuses a
file from an incompatible format version. Nothing is pickled.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from safetensors.numpy import load_file

from mmgr.errors import MmgrError
from mmgr.io import write_arrays_atomic, write_json_atomic
from mmgr.registry import Registry

if TYPE_CHECKING:
    from mmgr.config import TokenizerConfig

FORMAT_VERSION = 1
TOKENIZERS: Registry[type[SemanticTokenizer]] = Registry("tokenizer")


class SemanticTokenizer(ABC):
    """Base class; subclasses register with `@TOKENIZERS.register(name)` and set `name`."""

    name: ClassVar[str]

    @classmethod
    @abstractmethod
    def from_settings(cls, cfg: TokenizerConfig, seed: int) -> SemanticTokenizer:
        """An unfitted tokenizer with the settings of the config's `tokenizer` section."""

    @abstractmethod
    def fit(self, features: np.ndarray) -> SemanticTokenizer: ...

    @abstractmethod
    def transform(self, features: np.ndarray) -> np.ndarray:
        """int64[N, levels]: one code per level."""

    @abstractmethod
    def inverse_transform(self, codes: np.ndarray) -> np.ndarray:
        """float32[N, D]: the reconstruction the codes stand for (prefixes of codes: coarser reconstructions)."""

    @abstractmethod
    def candidates(self, features: np.ndarray, k: int) -> np.ndarray:
        """int64[N, k]: the k best last-level codes per item given its first levels' codes, best first."""

    @abstractmethod
    def get_params(self) -> dict[str, Any]: ...

    @abstractmethod
    def _arrays(self) -> dict[str, np.ndarray]:
        """Learned arrays to save."""

    @abstractmethod
    def _restore(self, arrays: dict[str, np.ndarray], state: dict[str, Any]) -> None:
        """Set learned attributes from saved arrays and state."""

    @property
    def levels(self) -> int:
        return len(self.codebook_sizes_)

    codebook_sizes_: list[int]
    dim_: int

    def fit_transform(self, features: np.ndarray) -> np.ndarray:
        return self.fit(features).transform(features)

    def _state(self) -> dict[str, Any]:
        return {"codebook_sizes": self.codebook_sizes_, "dim": self.dim_}

    def save(self, stem: Path | str) -> None:
        stem = Path(stem)
        if not hasattr(self, "codebook_sizes_"):
            raise MmgrError(f"{self.name}: fit the tokenizer before saving it")
        write_arrays_atomic(stem.with_suffix(".safetensors"), self._arrays(), {})
        write_json_atomic(stem.with_suffix(".json"), {"tokenizer": self.name, "format_version": FORMAT_VERSION,
                                                      "params": self.get_params(), "state": self._state()})


def load_tokenizer(stem: Path | str) -> SemanticTokenizer:
    """Rebuild a saved tokenizer; a file from another format version or an unknown class is an error."""
    stem = Path(stem)
    meta_path = stem.with_suffix(".json")
    try:
        meta = json.loads(meta_path.read_text())
    except FileNotFoundError:
        raise MmgrError(f"{meta_path}: no saved tokenizer here") from None
    if meta.get("format_version") != FORMAT_VERSION:
        raise MmgrError(f"{meta_path}: tokenizer format version {meta.get('format_version')} is not supported by this "
                        f"mmgr (expects {FORMAT_VERSION}); re-run `mmgr tokenize`")
    cls = TOKENIZERS.get(meta["tokenizer"])
    tokenizer = cls(**meta["params"])
    tokenizer.codebook_sizes_ = list(meta["state"]["codebook_sizes"])
    tokenizer.dim_ = int(meta["state"]["dim"])
    tokenizer._restore(load_file(str(stem.with_suffix(".safetensors"))), meta["state"])
    return tokenizer


def check_features(features: np.ndarray, codebook_sizes: list[int], name: str) -> np.ndarray:
    """float32[N, D] after checks that name what to change: NaN/inf, constant features, too few items."""
    x = np.asarray(features, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] == 0:
        raise MmgrError(f"{name}: expected features of shape (items, dim), got {x.shape}")
    if not np.isfinite(x).all():
        bad = int((~np.isfinite(x)).any(axis=1).sum())
        raise MmgrError(f"{name}: {bad} items have NaN or infinite features; re-run `mmgr encode`")
    if float(x.std(axis=0).max()) < 1e-8:
        raise MmgrError(f"{name}: all items have the same features (constant input); check the encoder and the "
                        "item text/images")
    if x.shape[0] < max(codebook_sizes):
        raise MmgrError(f"{name}: {x.shape[0]} items are fewer than the codebook size {max(codebook_sizes)}; use a "
                        f"smaller codebook (e.g. --codebook {2 ** int(np.log2(max(2, x.shape[0] // 4)))})")
    return x


def expand_sizes(levels: int, codebook_size: int | list[int]) -> list[int]:
    sizes = [codebook_size] * levels if isinstance(codebook_size, int) else list(codebook_size)
    if len(sizes) != levels or min(sizes) < 2:
        raise MmgrError(f"codebook sizes {sizes} must be {levels} values of at least 2")
    return sizes
