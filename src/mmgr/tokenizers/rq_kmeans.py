"""Residual k-means (RQ-KMeans) with faiss: level l clusters the residuals left by levels < l."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import faiss
import numpy as np

from mmgr.tokenizers.base import TOKENIZERS, SemanticTokenizer, check_features, expand_sizes

if TYPE_CHECKING:
    from mmgr.config import TokenizerConfig


@TOKENIZERS.register("rq-kmeans")
class RQKMeans(SemanticTokenizer):
    """`levels` codebooks of `codebook_size` centroids each, fitted level by level on residuals."""

    name = "rq-kmeans"

    def __init__(self, levels: int = 3, codebook_size: int | list[int] = 256, n_iter: int = 25,
                 normalize: bool = True, seed: int = 0) -> None:
        self.levels_setting = levels
        self.codebook_size = codebook_size
        self.n_iter = n_iter
        self.normalize = normalize
        self.seed = seed

    @classmethod
    def from_settings(cls, cfg: TokenizerConfig, seed: int) -> RQKMeans:
        return cls(cfg.levels, cfg.codebook_size, n_iter=cfg.n_iter, seed=seed)

    def get_params(self) -> dict[str, Any]:
        return {"levels": self.levels_setting, "codebook_size": self.codebook_size, "n_iter": self.n_iter,
                "normalize": self.normalize, "seed": self.seed}

    def fit(self, features: np.ndarray) -> RQKMeans:
        sizes = expand_sizes(self.levels_setting, self.codebook_size)
        residual = self._prepare(check_features(features, sizes, self.name))
        self.codebooks_: list[np.ndarray] = []
        for level, size in enumerate(sizes):
            kmeans = faiss.Kmeans(residual.shape[1], size, niter=self.n_iter, seed=self.seed + level,
                                  min_points_per_centroid=1, max_points_per_centroid=100_000, verbose=False)
            kmeans.train(residual)
            centroids = kmeans.centroids.astype(np.float32)                       # (K, D)
            self.codebooks_.append(centroids)
            residual = residual - centroids[_nearest(residual, centroids, 1)[:, 0]]
        self.codebook_sizes_, self.dim_ = sizes, int(features.shape[1])
        return self

    def transform(self, features: np.ndarray) -> np.ndarray:
        residual = self._prepare(np.asarray(features, dtype=np.float32))
        codes = np.empty((residual.shape[0], self.levels), dtype=np.int64)       # (N, L)
        for level, centroids in enumerate(self.codebooks_):
            codes[:, level] = _nearest(residual, centroids, 1)[:, 0]
            residual = residual - centroids[codes[:, level]]
        return codes

    def inverse_transform(self, codes: np.ndarray) -> np.ndarray:
        codes = np.asarray(codes, dtype=np.int64)
        out = np.zeros((codes.shape[0], self.dim_), dtype=np.float32)
        for level in range(codes.shape[1]):
            out += self.codebooks_[level][codes[:, level]]
        return out

    def candidates(self, features: np.ndarray, k: int) -> np.ndarray:
        residual = self._prepare(np.asarray(features, dtype=np.float32))
        for centroids in self.codebooks_[:-1]:
            residual = residual - centroids[_nearest(residual, centroids, 1)[:, 0]]
        return _nearest(residual, self.codebooks_[-1], min(k, self.codebook_sizes_[-1]))

    def _prepare(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        if self.normalize:
            x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        return x

    def _arrays(self) -> dict[str, np.ndarray]:
        return {f"codebook_{level}": c for level, c in enumerate(self.codebooks_)}

    def _restore(self, arrays: dict[str, np.ndarray], state: dict[str, Any]) -> None:
        self.codebooks_ = [arrays[f"codebook_{level}"] for level in range(len(self.codebook_sizes_))]


def _nearest(x: np.ndarray, centroids: np.ndarray, k: int) -> np.ndarray:
    """int64[N, k] indices of the k nearest centroids (L2), nearest first."""
    index = faiss.IndexFlatL2(centroids.shape[1])
    index.add(np.ascontiguousarray(centroids))
    _, nearest = index.search(np.ascontiguousarray(x), k)
    return nearest.astype(np.int64)
