"""A 2-D map of a run's items (t-SNE of the features their SIDs were fitted on), each point coloured by its first
code: whether the first level of the SID groups items that the embedding puts together (TriAlignGR's analysis)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mmgr.io import write_bytes_atomic


def item_map(features: np.ndarray, seed: int = 0, max_items: int = 5000) -> tuple[np.ndarray, np.ndarray]:
    """(rows used int64[M], 2-D coordinates float[M, 2]) of a t-SNE of L2-normalised features (a seeded sample of at
    most `max_items` rows)."""
    from sklearn.manifold import TSNE

    rows = np.arange(len(features))
    if len(rows) > max_items:
        rows = np.sort(np.random.default_rng(seed).choice(rows, max_items, replace=False))
    x = features[rows].astype(np.float32)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    perplexity = float(min(30, max(2, (len(rows) - 1) // 3)))
    return rows, TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)


def plot_item_map(coords: np.ndarray, first_codes: np.ndarray, path: Path, title: str) -> Path:
    """Scatter of `coords` coloured by `first_codes` (PNG, written atomically)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 6))
    ax.scatter(coords[:, 0], coords[:, 1], c=first_codes, cmap="tab20", s=6, linewidths=0)
    ax.set(title=title, xticks=[], yticks=[])
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    write_bytes_atomic(path, buffer.getvalue())
    return path


def first_code_purity(coords: np.ndarray, first_codes: np.ndarray, k: int = 10) -> float:
    """Share of each item's k nearest map neighbours with its first code (1 = the map separates first codes)."""
    from sklearn.neighbors import NearestNeighbors

    k = min(k, len(coords) - 1)
    _, neighbours = NearestNeighbors(n_neighbors=k + 1).fit(coords).kneighbors(coords)
    return float((first_codes[neighbours[:, 1:]] == first_codes[:, None]).mean())
