"""SynGR's analyses (arXiv 2605.18920): which modality a multimodal model reads, and how much of its performance
needs both modalities.

- `saliency_shares`: per input row holding two modalities' codes (late fusion, bimodal histories), how a row's
  token importance (`models.saliency.input_importance`: gradient x input on the item-level backbone, attention
  received on an encoder-decoder) divides between the modalities: each modality's mean importance per code token,
  as a share of the modalities' sum (so a modality is not favoured for writing more tokens per item);
  `summarize_shares` gives the numbers a report shows (`report/saliency.py` measures a trained run).
- `pid_estimate`: a PID-style split of the bimodal model's hits (HR@K per user) by which unimodal models also hit:
  redundant (both unimodal models), unique to text, unique to image, and synergistic (neither: only the model that
  sees both modalities gets it right), with the share of users each covers.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from mmgr.models.saliency import input_importance


def saliency_shares(model: torch.nn.Module, batches: Iterable[dict[str, torch.Tensor]], token_kinds: torch.Tensor,
                    modalities: list[str]) -> dict[str, np.ndarray]:
    """Modality -> (N,) share of each row's importance per code token on that modality, over the N rows of the
    training-shaped `batches` (input_ids, attention_mask, labels; right-aligned) whose input holds codes of every
    modality and some importance (the other rows are skipped; a row's shares sum to 1). `token_kinds` (V,): each
    token id's index in `modalities`, -1 for tokens that count for none (specials, prompts, users, collision levels)."""
    kept = []
    for batch in batches:
        every = holds_every_modality(batch, token_kinds, len(modalities))               # (B,)
        if every.any():
            ids, mask, labels = (batch[key][every] for key in ("input_ids", "attention_mask", "labels"))
            kinds = code_kinds(ids, mask, token_kinds)                                  # (b, T)
            importance = input_importance(model, ids, mask, labels)                     # (b, T)
            mass = torch.stack([(importance * (kinds == m)).sum(dim=1) for m in range(len(modalities))],
                               dim=1)                                                    # (b, M)
            kept.append(mass / modality_counts(kinds, len(modalities)))
    per_token = torch.cat(kept).double().numpy() if kept else np.zeros((0, len(modalities)))  # (N, M)
    per_token = per_token[per_token.sum(axis=1) > 0]
    shares = per_token / per_token.sum(axis=1, keepdims=True)
    return {m: shares[:, index] for index, m in enumerate(modalities)}


def history_rows(batches: Iterable[dict[str, torch.Tensor]], token_kinds: torch.Tensor, modalities: int,
                 translations: torch.Tensor, rows: int) -> list[dict[str, torch.Tensor]]:
    """The rows of `batches`, in order, whose input holds codes of every modality and no translation prompt
    (`translations` (V,) bool: such a row holds one item in two modalities, not a history), each batch cut to those
    rows, until `rows` are gathered or the batches end: the whole batch that reaches `rows` is kept."""
    kept, seen = [], 0
    for batch in batches:
        if seen >= rows:
            break
        prompted = (translations[batch["input_ids"]] & batch["attention_mask"].bool()).any(dim=1)   # (B,)
        every = holds_every_modality(batch, token_kinds, modalities) & ~prompted
        if every.any():
            kept.append({key: value[every] for key, value in batch.items()})
            seen += int(every.sum())
    return kept


def holds_every_modality(batch: dict[str, torch.Tensor], token_kinds: torch.Tensor, modalities: int) -> torch.Tensor:
    """bool (B,): whether each row's input holds code tokens of every modality."""
    kinds = code_kinds(batch["input_ids"], batch["attention_mask"], token_kinds)
    return (modality_counts(kinds, modalities) > 0).all(dim=1)


def code_kinds(ids: torch.Tensor, mask: torch.Tensor, token_kinds: torch.Tensor) -> torch.Tensor:
    """(B, T) each input token's modality index (-1: no modality, padding)."""
    return token_kinds[ids].masked_fill(mask == 0, -1)


def modality_counts(kinds: torch.Tensor, modalities: int) -> torch.Tensor:
    """(B, M) each row's number of code tokens per modality."""
    return torch.stack([(kinds == m).sum(dim=1) for m in range(modalities)], dim=1)


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
