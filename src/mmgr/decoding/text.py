"""Text generation by a causal model that writes both SID and text tokens (TriAlignGR): greedy decoding with the
model's key/value cache, restricted to the run's text tokens and <eos>, so a SID -> title prompt can only be
answered in words. It steps the model through the same cached step as the SID search (`CausalStep`), so it works
for every causal backbone (the Llama blocks and a pretrained LM over the run's vocabulary alike). SIDs are decoded by
the trie-constrained search instead (`mmgr.decoding.causal`)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from mmgr.decoding.causal import CausalStep
from mmgr.models.modes import eval_mode


@torch.inference_mode()
def generate_text(model: nn.Module, prompts: list[np.ndarray], allowed: np.ndarray, eos: int, pad: int,
                  max_new_tokens: int, batch_size: int = 64) -> list[list[int]]:
    """Greedy continuation of each prompt with tokens of `allowed`, up to <eos> (dropped) or `max_new_tokens`."""
    device = next(model.parameters()).device
    blocked = torch.from_numpy(~allowed).to(device)                            # (V,)
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
            step = CausalStep(model, ids.to(device), mask.to(device))
            logits = step(ids[:, -1].to(device))                             # the prompts' next-token logits
            written = torch.full((len(rows), max_new_tokens), eos, dtype=torch.int64, device=device)
            done = torch.zeros(len(rows), dtype=torch.bool, device=device)
            for position in range(max_new_tokens):
                token = logits.float().masked_fill(blocked, float("-inf")).argmax(dim=-1).masked_fill(done, eos)
                written[:, position] = token
                done |= token == eos
                if bool(done.all()) or position == max_new_tokens - 1:
                    break
                logits = step(token)
            for row in written.tolist():
                out.append(row[:row.index(eos)] if eos in row else row)
    return out
