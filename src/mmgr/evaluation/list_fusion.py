"""Does fusing a run's ranked lists help? Each decoding target's list alone against their fusion (SynGR and
MQL4GRec decode the next item's text SID and its image SID separately and fuse the two lists), on the same users.

For lists L_1..L_m of one run and the fused list F (`decoding.fusion`, the rule the run's evaluation uses):
- `alone[t]`, `fused`: the mean of each metric (hr@k, ndcg@k, mrr@k; `evaluation.metrics`) over the users;
- `fused_vs_alone[t]`: the paired bootstrap of ndcg@10(F) - ndcg@10(L_t) over the users (`significance`);
- `any_list_hr@10`: the share of users whose target is in the top 10 of some L_t (what a fusion could reach if
  it always kept the right list's top 10);
- `in_every_list`: the share of F's top-10 items that every list holds in its top_k (the items a bonus for
  agreement lifts).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mmgr.config import DecodingConfig
from mmgr.decoding.fusion import RankedList, fuse
from mmgr.evaluation.metrics import DEFAULT_KS, per_user, summarize
from mmgr.evaluation.significance import paired_bootstrap

TOP = 10


def compare_lists(lists: dict[str, RankedList], targets: np.ndarray, cfg: DecodingConfig,
                  resamples: int = 10_000) -> dict[str, Any]:
    """Each list alone and their fusion on the same users (`targets` int[U]: each user's held-out item)."""
    ks = tuple(k for k in DEFAULT_KS if k <= cfg.top_k)
    fused_items, _ = fuse(list(lists.values()), cfg.fusion, cfg.top_k, cfg.fusion_bonus)       # (U, top_k)
    fused = per_user(fused_items, targets, ks)
    alone = {target: per_user(items, targets, ks) for target, (items, _) in lists.items()}
    hit_somewhere = np.zeros(len(targets), dtype=bool)
    for items, _ in lists.values():
        hit_somewhere |= (items[:, :TOP] == targets[:, None]).any(axis=1)
    return {"rows": len(targets), "rule": cfg.fusion, "bonus": cfg.fusion_bonus,
            "fused": summarize(fused), "alone": {target: summarize(m) for target, m in alone.items()},
            "fused_vs_alone": {target: paired_bootstrap(m[f"ndcg@{TOP}"], fused[f"ndcg@{TOP}"], resamples)
                               for target, m in alone.items()},
            f"any_list_hr@{TOP}": float(hit_somewhere.mean()),
            "in_every_list": in_every_list(fused_items[:, :TOP], [items for items, _ in lists.values()])}


def in_every_list(fused: np.ndarray, lists: list[np.ndarray]) -> float:
    """The share of the fused lists' items (int[U, K], -1 padding left out) found in every one of `lists` (each
    int[U, K'])."""
    everywhere = np.ones(fused.shape, dtype=bool)
    for items in lists:
        everywhere &= (fused[:, :, None] == items[:, None, :]).any(axis=2)
    real = fused >= 0
    return float(everywhere[real].mean()) if real.any() else 0.0
