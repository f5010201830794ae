"""What a tokenizer's codes look like: collisions, codebook use, reconstruction by depth, prefix sharing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mmgr.tokenizers.base import SemanticTokenizer
from mmgr.tokenizers.collisions import collision_rate

COLLAPSE_UTILISATION = 0.1


def diagnose(features: np.ndarray, tokenizer: SemanticTokenizer, raw: np.ndarray, resolved: np.ndarray,
             sizes: list[int]) -> dict[str, Any]:
    """Every statistic over the items the tokenizer was fitted on (`raw`: before collision handling)."""
    levels = raw.shape[1]
    usage = [np.bincount(raw[:, level], minlength=sizes[level]) for level in range(levels)]
    report: dict[str, Any] = {
        "items": int(len(raw)),
        "levels": levels,
        "codebook_sizes": sizes,
        "collision_rate_before": collision_rate(raw),
        "collision_rate_after": collision_rate(resolved),
        "distinct_tuples_before": int(len({tuple(r) for r in raw.tolist()})),
        "max_items_per_tuple_before": int(max(np.unique(raw, axis=0, return_counts=True)[1])),
        "utilisation": [float((u > 0).mean()) for u in usage],
        "perplexity": [_perplexity(u) for u in usage],
        "reconstruction_cosine": _cosine_by_depth(features, tokenizer, raw),
        "items_per_prefix": [float(len(raw) / len({tuple(r) for r in raw[:, :d].tolist()}))
                             for d in range(1, levels + 1)],
    }
    report["warnings"] = _warnings(report)
    return report


def _perplexity(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(np.exp(-(p * np.log(p)).sum()))


def _cosine_by_depth(features: np.ndarray, tokenizer: SemanticTokenizer, codes: np.ndarray) -> list[float]:
    x = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    out = []
    for depth in range(1, codes.shape[1] + 1):
        recon = tokenizer.inverse_transform(codes[:, :depth])
        recon = recon / np.maximum(np.linalg.norm(recon, axis=1, keepdims=True), 1e-12)
        out.append(float((x * recon).sum(1).mean()))
    return out


def _warnings(report: dict[str, Any]) -> list[str]:
    warnings = []
    for level, used in enumerate(report["utilisation"]):
        if used < COLLAPSE_UTILISATION:
            warnings.append(f"codebook collapse at level {level}: only {used:.0%} of {report['codebook_sizes'][level]}"
                            " codes are used; use a smaller codebook, k-means initialisation, dead-code restarts or "
                            "more training")
    if report["collision_rate_before"] > 0.3:
        warnings.append(f"{report['collision_rate_before']:.0%} of items collide before resolution: add a level or "
                        "enlarge the codebooks")
    return warnings


def plot(report: dict[str, Any], path: Path, title: str) -> None:
    """Three panels: use per level, reconstruction cosine by depth, items per prefix by depth (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mmgr.io import atomic_path

    levels = np.arange(1, report["levels"] + 1)
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    axes[0].bar(levels - 0.2, report["utilisation"], width=0.4, label="utilisation")
    axes[0].bar(levels + 0.2, np.array(report["perplexity"]) / np.array(report["codebook_sizes"]), width=0.4,
                label="perplexity / size")
    axes[0].set(xlabel="level", ylim=(0, 1.05), title="codebook use")
    axes[0].legend(fontsize=8)
    axes[1].plot(levels, report["reconstruction_cosine"], marker="o")
    axes[1].set(xlabel="depth", ylabel="mean cosine", title="reconstruction", ylim=(0, 1))
    axes[2].semilogy(levels, report["items_per_prefix"], marker="o")
    for axis in axes:
        axis.set_xticks(levels)
    axes[2].set(xlabel="depth", ylabel="items per prefix", title=f"collisions {report['collision_rate_before']:.1%}"
                                                                  " before resolution")
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
