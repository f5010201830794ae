"""SynGR's analyses (arXiv 2605.18920): which modality a multimodal model reads, and how much of its performance
needs both modalities.

- `saliency_shares`: per input row holding two modalities' codes (late fusion, bimodal histories), the share of its
  tokens' importance (`models.saliency.input_importance`: gradient x input on the item-level backbone, attention
  received on an encoder-decoder) that lands on each modality's code tokens; `run_saliency` measures it on a
  trained run's own training rows and summarizes it, `record_saliency` keeps that in the run
  (`analysis/saliency.json`, which run records keep and the suites' analyses read).
- `pid_estimate`: a PID-style split of the bimodal model's hits (HR@K per user) by which unimodal models also hit:
  redundant (both unimodal models), unique to text, unique to image, and synergistic (neither: only the model that
  sees both modalities gets it right), with the share of users each covers.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmgr.evaluation.modality import SALIENCY, is_multimodal
from mmgr.io import write_json_atomic
from mmgr.layouts.base import token_modalities
from mmgr.models.saliency import importance_measure, input_importance
from mmgr.tokenizers.codes import Vocabulary


def saliency_shares(model: torch.nn.Module, batches: Iterable[dict[str, torch.Tensor]],
                    vocab: Vocabulary) -> dict[str, np.ndarray]:
    """Modality -> (N,) share of each row's token importance on that modality's code tokens, over the N rows of the
    training-shaped `batches` (input_ids, attention_mask, labels; right-aligned) whose input holds codes of two
    modalities or more (the other rows are skipped; a row's shares sum to 1)."""
    modalities = range(len(vocab.levels))
    kept = []
    for batch in batches:
        ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
        kinds = token_modalities(vocab, ids).masked_fill(mask == 0, -1)                    # (B, T)
        both = torch.stack([(kinds == m).any(dim=1) for m in modalities], dim=1).sum(dim=1) >= 2   # (B,)
        if both.any():
            importance = input_importance(model, ids[both], mask[both], labels[both])      # (b, T)
            kept.append(torch.stack([(importance * (kinds[both] == m)).sum(dim=1) for m in modalities], dim=1))
    mass = torch.cat(kept).double().numpy() if kept else np.zeros((0, len(modalities)))   # (N, M)
    shares = mass / np.maximum(mass.sum(axis=1, keepdims=True), 1e-12)
    return {m: shares[:, index] for index, m in enumerate(vocab.levels)}


def summarize_shares(shares: dict[str, np.ndarray], measure: str) -> dict[str, Any]:
    """Rows, mean share per modality, the share of rows each modality leads, and the first modality's quantiles and
    histogram (10 bins over [0, 1])."""
    first = next(iter(shares))
    stacked = np.stack(list(shares.values()), axis=1)                                    # (N, M)
    return {"measure": measure, "rows": len(stacked),
            "mean": {m: float(v.mean()) for m, v in shares.items()},
            "leads": {m: float((stacked.argmax(axis=1) == i).mean()) for i, m in enumerate(shares)},
            "quantiles": {first: {str(q): float(np.quantile(shares[first], q)) for q in (0.1, 0.5, 0.9)}},
            "histogram": {first: np.histogram(shares[first], bins=10, range=(0, 1))[0].tolist()}}


def run_saliency(run: Path, rows: int = 2048) -> dict[str, Any] | None:
    """`summarize_shares` of a trained run's `saliency_shares` over its main objective's first `rows` training rows
    (whole batches of the first epoch, in order: a seeded random sample); None when none of them holds two
    modalities (one SID per item, or histories of one modality)."""
    from mmgr.engines.method import stage_data
    from mmgr.inference.generative import load_model
    from mmgr.inference.prepared import load_prepared
    from mmgr.objectives.base import OBJECTIVES
    from mmgr.rundir import RunDir

    folder = RunDir(run)
    config = folder.config()
    prep = load_prepared(folder, config)
    data, _ = stage_data(OBJECTIVES.get(config.training.objective), prep, config)
    model = load_model(folder, config, prep, device="cpu")
    seen, batches = 0, []
    for key in data.batches(0):
        if seen >= rows:
            break
        batches.append(data.collate(key))
        seen += len(batches[-1]["input_ids"])
    shares = saliency_shares(model, batches, prep.layout.vocab)
    first = next(iter(shares))
    return summarize_shares(shares, importance_measure(model)) if len(shares[first]) else None


def record_saliency(run: Path) -> Path | None:
    """`run_saliency` of a trained multimodal run, written once into its `analysis/saliency.json` (kept when
    present); that path, or None when the run has nothing to measure."""
    path = run / SALIENCY
    if not path.is_file() and is_multimodal(run) and (summary := run_saliency(run)) is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, summary)
    return path if path.is_file() else None


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
