"""SynGR's analyses (arXiv 2605.18920): where a bimodal model's attention goes, and how much of its performance needs
both modalities.

- `attention_shares`: per user, the share of the encoder's last-layer attention (the saliency of
  `models/saliency.py`) that lands on each modality's code tokens of the bimodal history; plotted as a distribution
  per dataset by `plot_attention_shares`.
- `pid_estimate`: a PID-style split of the bimodal model's hits (HR@K per user) by which unimodal models also hit:
  redundant (both unimodal models), unique to text, unique to image, and synergistic (neither: only the model that
  sees both modalities gets it right), with the share of users each covers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmgr.layouts.base import Layout, pad_batch, token_modalities
from mmgr.models.saliency import token_importance


def attention_shares(model: torch.nn.Module, layout: Layout, user_ids: list[str], histories: list[np.ndarray],
                     batch_size: int = 256) -> dict[str, np.ndarray]:
    """Modality -> (U,) share of each user's history attention on that modality's tokens (the first target's
    input; shares over the code tokens sum to 1)."""
    target = next(iter(layout.targets))
    rows = [layout.target_input(target, layout.encoder_tokens(u, h)) for u, h in zip(user_ids, histories,
                                                                                      strict=True)]
    modalities = list(layout.vocab.levels)
    mass = np.zeros((len(rows), len(modalities)))
    for start in range(0, len(rows), batch_size):
        ids, mask = pad_batch(rows[start:start + batch_size])
        importance = token_importance(model, ids, mask)
        kinds = token_modalities(layout.vocab, ids).masked_fill(mask == 0, -1)
        mass[start:start + len(ids)] = torch.stack([(importance * (kinds == m)).sum(1)
                                                    for m in range(len(modalities))], 1).numpy()     # (b, M)
    shares = mass / np.maximum(mass.sum(axis=1, keepdims=True), 1e-12)
    return {m: shares[:, index] for index, m in enumerate(modalities)}


def pid_estimate(bimodal: np.ndarray, text: np.ndarray, image: np.ndarray) -> dict[str, Any]:
    """Split of the bimodal model's per-user hits (bool arrays, one entry per user) by the unimodal models' hits."""
    bimodal, text, image = (np.asarray(a, dtype=bool) for a in (bimodal, text, image))
    parts = {"redundant": bimodal & text & image, "unique_text": bimodal & text & ~image,
             "unique_image": bimodal & image & ~text, "synergy": bimodal & ~text & ~image}
    hits = max(int(bimodal.sum()), 1)
    return {"users": len(bimodal), "bimodal_hits": int(bimodal.sum()),
            "lost": int((~bimodal & (text | image)).sum()),
            "share_of_bimodal_hits": {k: float(v.sum() / hits) for k, v in parts.items()},
            "share_of_users": {k: float(v.mean()) for k, v in parts.items()},
            "needs_both": float(parts["synergy"].sum() / hits)}


def plot_attention_shares(shares: dict[str, np.ndarray], path: Path, modality: str = "text") -> Path:
    """Histogram per dataset (name -> per-user share of attention on `modality`'s tokens)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    bins = np.linspace(0, 1, 26)
    for name, values in shares.items():
        ax.hist(values, bins=bins, alpha=0.55, label=f"{name} (mean {np.mean(values):.2f})", density=True)
    ax.axvline(0.5, color="k", lw=0.8, ls="--")
    ax.set_xlabel(f"share of history attention on {modality} tokens (last encoder layer)")
    ax.set_ylabel("users (density)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
