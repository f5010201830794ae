"""Trie-constrained beam search for causal (decoder-only) generators, continuing after the history prompt.

Same trie, same beam step (`search_trie`) and same result contract as the encoder-decoder search in
`mmgr.decoding.beam`: item indices (B, top_k) best first (-1 pads), and their sequence log-probabilities (sums of
log_softmax over the whole vocabulary). The prompt is run once per user (left-aligned, positions from the attention
mask); each of the L steps feeds one token per beam with the model's key/value cache, which is reordered with the
beams. `reference_causal_beam_search` re-runs the whole sequence for every prefix without a cache, one user at a
time: the ground truth in tests.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mmgr.decoding.beam import search_trie, top_items
from mmgr.decoding.trie import NO_NODE, PrefixTrie
from mmgr.models.kvcache import cache_argument, returned_cache
from mmgr.models.modes import eval_mode


@torch.inference_mode()
def causal_beam_search(model: nn.Module, input_ids: Tensor, attention_mask: Tensor, trie: PrefixTrie,
                       beam_size: int = 20, top_k: int = 10, *, chunk_size: int = 64) -> tuple[Tensor, Tensor]:
    """Best `top_k` distinct items per user after the prompts `input_ids` (B, S), left- or right-padded."""
    if not 1 <= top_k <= beam_size:
        raise ValueError(f"need 1 <= top_k <= beam_size, got top_k={top_k}, beam_size={beam_size}")
    if trie.device != input_ids.device:
        trie = trie.to(input_ids.device)
    items = torch.full((len(input_ids), top_k), NO_NODE, dtype=torch.int64, device=input_ids.device)
    scores = torch.full((len(input_ids), top_k), float("-inf"), device=input_ids.device)
    order = attention_mask.sum(dim=1).argsort(descending=True, stable=True)  # similar lengths share a chunk
    dummy = torch.zeros(1, dtype=torch.int64, device=input_ids.device)     # the first step reads the prompt
    with eval_mode(model):
        for users in order.split(chunk_size):
            ids, mask = left_align(input_ids[users], attention_mask[users])
            nodes, beam_scores = search_trie(CausalStep(model, ids, mask), trie, len(users), beam_size, dummy)
            items[users], scores[users] = top_items(trie, nodes, beam_scores, top_k)
    return items, scores


def left_align(input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor]:
    """Rows moved to the right end (left padding), columns that are padding in every row dropped."""
    lengths = attention_mask.sum(dim=1)                                     # (B,)
    width = int(lengths.max())
    keep = attention_mask.bool()
    ids = torch.zeros(len(input_ids), width, dtype=input_ids.dtype, device=input_ids.device)
    mask = torch.zeros_like(ids)
    columns = torch.arange(width, device=ids.device)[None] >= (width - lengths)[:, None]  # (B, width)
    ids[columns], mask[columns] = input_ids[keep], 1
    return ids, mask


class CausalStep:
    """The `Step` protocol of `search_trie` for a Hugging Face causal LM with its key/value cache."""

    def __init__(self, model: nn.Module, input_ids: Tensor, attention_mask: Tensor):
        self.model, self.input_ids, self.mask = model, input_ids, attention_mask   # (B, S) left-padded
        self.positions = attention_mask.sum(dim=1) - 1                     # (R,) position of each row's last token
        self.cache, self.cache_argument = None, cache_argument(model)

    def __call__(self, tokens: Tensor) -> Tensor:
        if self.cache is None:                                              # prefill the prompts
            positions = (self.mask.cumsum(dim=1) - 1).clamp(min=0)
            out = self.model(input_ids=self.input_ids, attention_mask=self.mask, position_ids=positions,
                             use_cache=True, logits_to_keep=1)
        else:
            self.positions = self.positions + 1
            self.mask = torch.cat([self.mask, self.mask.new_ones(len(self.mask), 1)], dim=1)
            out = self.model(input_ids=tokens[:, None], attention_mask=self.mask, position_ids=self.positions[:, None],
                             use_cache=True, **{self.cache_argument: self.cache})
        self.cache = returned_cache(out)
        return out.logits[:, -1]                                            # (R, V)

    def reorder(self, origin: Tensor, beams: int) -> None:
        self.cache.reorder_cache(origin)
        self.mask, self.positions = self.mask[origin], self.positions[origin]


@torch.inference_mode()
def reference_causal_beam_search(model: nn.Module, input_ids: Tensor, attention_mask: Tensor, trie: PrefixTrie,
                                 beam_size: int = 20, top_k: int = 10) -> tuple[Tensor, Tensor]:
    """Same contract, one user at a time, the whole sequence re-run for every prefix (no cache), dict trie."""
    reference = trie.reference()
    all_items, all_scores = [], []
    with eval_mode(model):
        for row in range(len(input_ids)):
            prompt = input_ids[row][attention_mask[row].bool()].tolist()
            beams: list[tuple[list[int], float]] = [([], 0.0)]
            for _ in range(trie.depth):
                candidates = []
                for tokens, score in beams:
                    logits = model(input_ids=torch.tensor([prompt + tokens])).logits[0, -1]
                    log_probs = logits.float().log_softmax(dim=-1)
                    candidates += [([*tokens, t], score + float(log_probs[t]))
                                   for t in reference.allowed_tokens_reference(tokens)]
                beams = sorted(candidates, key=lambda c: -c[1])[:beam_size]
            ranked = [(reference.item(tokens), score) for tokens, score in beams][:top_k]
            ranked += [(NO_NODE, float("-inf"))] * (top_k - len(ranked))
            all_items.append([item for item, _ in ranked])
            all_scores.append([score for _, score in ranked])
    return torch.tensor(all_items), torch.tensor(all_scores)
