"""Text generation by a causal model that writes both SID and text tokens (TriAlignGR): ordinary greedy
generation (Hugging Face `generate`, with its key/value cache) restricted to the run's text tokens and <eos>, so a
SID -> title prompt can only be answered in words. SIDs are decoded by the trie-constrained search instead
(`mmgr.decoding.causal`)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn
from transformers import LogitsProcessor, LogitsProcessorList

from mmgr.models.modes import eval_mode


class AllowedTokens(LogitsProcessor):
    """Scores of tokens outside `allowed` (bool[V]) set to -inf."""

    def __init__(self, allowed: Tensor) -> None:
        self.blocked = ~allowed

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        return scores.masked_fill(self.blocked.to(scores.device), float("-inf"))


@torch.inference_mode()
def generate_text(model: nn.Module, prompts: list[np.ndarray], allowed: np.ndarray, eos: int, pad: int,
                  max_new_tokens: int, batch_size: int = 64) -> list[list[int]]:
    """Greedy continuation of each prompt with tokens of `allowed`, up to <eos> (dropped) or `max_new_tokens`."""
    device = next(model.parameters()).device
    processors = LogitsProcessorList([AllowedTokens(torch.from_numpy(allowed))])
    out: list[list[int]] = []
    with eval_mode(model):
        for start in range(0, len(prompts), batch_size):
            rows = prompts[start:start + batch_size]
            width = max(len(r) for r in rows)
            ids = torch.full((len(rows), width), pad, dtype=torch.int64)
            mask = torch.zeros((len(rows), width), dtype=torch.int64)
            for i, row in enumerate(rows):                                   # left padding
                ids[i, width - len(row):] = torch.from_numpy(row)
                mask[i, width - len(row):] = 1
            generated = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device),
                                       max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                                       logits_processor=processors, eos_token_id=eos, pad_token_id=pad)
            for row in generated[:, width:].tolist():
                out.append(row[:row.index(eos)] if eos in row else row)
    return out
