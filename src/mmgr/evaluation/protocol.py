"""Full-ranking evaluation by trie-constrained beam search: every catalog item is a candidate; the model's top-K
distinct items per user are scored against the held-out item (leave-one-out)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from mmgr.config import DecodingConfig
from mmgr.data.splits import Examples
from mmgr.decoding.beam import constrained_beam_search
from mmgr.decoding.fusion import RankedList, fuse
from mmgr.decoding.trie import PrefixTrie
from mmgr.evaluation.metrics import DEFAULT_KS, per_user
from mmgr.layouts.base import Layout, pad_batch
from mmgr.progress import progress_bar
from mmgr.tokenizers.codes import Vocabulary

Search = Callable[..., tuple[torch.Tensor, torch.Tensor]]   # (model, input_ids, mask, trie, beam_size, top_k)
Prompt = Callable[[Vocabulary, np.ndarray], np.ndarray]


def rank_items(model: torch.nn.Module, layout: Layout, user_ids: list[str], histories: list[np.ndarray],
               tries: dict[str, PrefixTrie], cfg: DecodingConfig, progress: bool = False,
               search: Search = constrained_beam_search, prompt: Prompt | None = None,
               row_beams: np.ndarray | None = None) -> RankedList:
    """(items int[U, top_k], scores float[U, top_k]) best first: `target_lists`, several targets' lists fused by
    `cfg.fusion`. `row_beams` (U,): a beam width per user (at most `cfg.beam_size`), one target only."""
    if row_beams is not None and len(tries) != 1:
        raise ValueError("a beam width per user needs one decoding target: fused lists depend on their length")
    ranked = list(target_lists(model, layout, user_ids, histories, tries, cfg, progress, search, prompt,
                               row_beams).values())
    return ranked[0] if len(ranked) == 1 else fuse(ranked, cfg.fusion, cfg.top_k, cfg.fusion_bonus)


def target_lists(model: torch.nn.Module, layout: Layout, user_ids: list[str], histories: list[np.ndarray],
                 tries: dict[str, PrefixTrie], cfg: DecodingConfig, progress: bool = False,
                 search: Search = constrained_beam_search, prompt: Prompt | None = None,
                 row_beams: np.ndarray | None = None) -> dict[str, RankedList]:
    """Target -> its ranked list, one beam search per decoding target of the layout (`tries`: target -> trie); a
    score is the SID's summed log-probability / (SID length + 1): Hugging Face's length normalisation of a SID
    followed by its end token, the scale of the beam scores SynGR's authors fuse (our SIDs have no end token, so its
    log-probability, near 0 once trained, is not added). `search` and `prompt` (the layout's tokens -> the model's
    input) come from the backbone; the defaults are T5's."""
    histories_tokens = [layout.encoder_tokens(u, h) for u, h in zip(user_ids, histories, strict=True)]
    ranked = {}
    for target, trie in tries.items():
        rows = [layout.target_input(target, row) for row in histories_tokens]
        if prompt is not None:
            rows = [prompt(layout.vocab, row) for row in rows]
        items, scores = search_rows(model, rows, trie, cfg, progress, search, row_beams)
        ranked[target] = (items, scores / (trie.depth + 1))      # normalised as HF's beam scores of SID + end token
    return ranked


def search_rows(model: torch.nn.Module, rows: list[np.ndarray], trie: PrefixTrie, cfg: DecodingConfig,
                progress: bool, search: Search, row_beams: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Beam search over one trie for the model's input rows, batched by length; results in the input order."""
    order = np.argsort([len(r) for r in rows], kind="stable")
    items = np.full((len(rows), cfg.top_k), -1, dtype=np.int64)
    scores = np.full((len(rows), cfg.top_k), -np.inf, dtype=np.float32)
    device = next(model.parameters()).device
    model.eval()
    with progress_bar("decoding", total=len(rows), enabled=progress) as advance:
        for start in range(0, len(rows), cfg.batch_size):
            index = order[start:start + cfg.batch_size]
            input_ids, mask = pad_batch([rows[i] for i in index])
            widths = {} if row_beams is None else {"row_beams": torch.from_numpy(row_beams[index]).to(device)}
            got, score = search(model, input_ids.to(device), mask.to(device), trie, beam_size=cfg.beam_size,
                                top_k=cfg.top_k, **widths)
            items[index], scores[index] = got.cpu().numpy(), score.float().cpu().numpy()
            advance(len(index))
    return items, scores


def evaluate_examples(model: torch.nn.Module, layout: Layout, user_ids: list[str], examples: Examples,
                      tries: dict[str, PrefixTrie], cfg: DecodingConfig, ks: tuple[int, ...] = DEFAULT_KS,
                      progress: bool = False, search: Search = constrained_beam_search,
                      prompt: Prompt | None = None) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Per-user metrics and the ranked lists for `examples` (histories -> held-out targets)."""
    names = [user_ids[u] for u in examples.users.tolist()]
    ranked, _ = rank_items(model, layout, names, examples.histories, tries, cfg, progress, search, prompt)
    return per_user(ranked, examples.targets, tuple(k for k in ks if k <= cfg.top_k)), ranked


def subset(examples: Examples, index: np.ndarray) -> Examples:
    return Examples(examples.users[index], [examples.histories[i] for i in index.tolist()], examples.targets[index])


def protocol_description(cfg: DecodingConfig, ks: tuple[int, ...]) -> dict[str, Any]:
    return {"ranking": "full (every catalog item), trie-constrained beam search", "beam_size": cfg.beam_size,
            "top_k": cfg.top_k, "ks": list(ks), "targets": "leave-one-out (one held-out item per user)",
            "metrics": "hr@k = recall@k (one target), ndcg@k = 1/log2(rank+2), mrr@k = 1/(rank+1), rank 0-based",
            "history_items_filtered": False}
