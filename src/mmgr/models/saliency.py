"""SynGR's saliency diagnosis and adaptive masking (arXiv 2605.18920), batched and without gradients.

Token importance is the attention a history token receives in the encoder's last self-attention layer, averaged
over heads and over the real (non-padding) query positions. A sequence's dominant modality is the one whose tokens
have the higher mean importance; adaptive masking hides the top `r` fraction (rounded half up) of the dominant
modality's tokens, most important first. `kinds` (B, T) is each token's modality index from the vocabulary
(`layouts.base.token_modalities`; -1 for prompts, specials and padding, which are never masked).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mmgr.errors import MmgrError
from mmgr.models.modes import eval_mode


@torch.no_grad()
def token_importance(model: nn.Module, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
    """float32 (B, T): attention received per token (last encoder layer, mean over heads and real queries); 0 on
    padding. The encoder runs in eval mode (no dropout) and full precision."""
    with eval_mode(model), torch.autocast(input_ids.device.type, enabled=False):
        attention = model.get_encoder()(input_ids=input_ids, attention_mask=attention_mask,
                                        output_attentions=True).attentions[-1]           # (B, H, T, T)
    received = attention.float().mean(dim=1)                                             # (B, T_query, T_key)
    queries = attention_mask.float()
    importance = (received * queries[:, :, None]).sum(dim=1) / queries.sum(dim=1, keepdim=True).clamp(min=1)
    return importance * queries


def importance_measure(model: nn.Module) -> str | None:
    """What `input_importance` measures for this model: gradient x input (`input_saliency`: the item-level backbone,
    whose attention runs between whole items, not tokens), the attention a token receives (encoder-decoders), or
    None (decoder-only language models: neither)."""
    if hasattr(model, "input_saliency"):
        return "gradient x input"
    return "attention received" if getattr(getattr(model, "config", None), "is_encoder_decoder", False) else None


def input_importance(model: nn.Module, input_ids: Tensor, attention_mask: Tensor, labels: Tensor) -> Tensor:
    """float32 (B, T): each input token's importance for the rows' `labels` (right-aligned rows; 0 on padding), as
    `importance_measure` says."""
    measure = importance_measure(model)
    if measure is None:
        raise MmgrError(f"{type(model).__name__}: no token importance (neither gradient x input nor an encoder's "
                        "attention)")
    if measure == "gradient x input":
        return model.input_saliency(input_ids, attention_mask, labels)
    return token_importance(model, input_ids, attention_mask)


def modality_importance(importance: Tensor, kinds: Tensor, modalities: int) -> Tensor:
    """(B, M): mean importance of each modality's tokens (-inf where a sequence has none)."""
    means = []
    for modality in range(modalities):
        own = (kinds == modality).float()
        count = own.sum(dim=1)
        mean = (importance * own).sum(dim=1) / count.clamp(min=1)
        means.append(mean.masked_fill(count == 0, float("-inf")))
    return torch.stack(means, dim=1)


def dominant_modality(importance: Tensor, kinds: Tensor, modalities: int) -> Tensor:
    """int64 (B,): the modality with the higher mean importance in each sequence (ties: the first)."""
    return modality_importance(importance, kinds, modalities).argmax(dim=1)


def top_r_mask(importance: Tensor, kinds: Tensor, dominant: Tensor, ratio: float) -> Tensor:
    """bool (B, T): the round-half-up `ratio` fraction of each row's `dominant` tokens with the highest importance
    (ties: the earlier position)."""
    eligible = kinds == dominant[:, None]
    count = torch.floor(ratio * eligible.sum(dim=1) + 0.5).long()                       # (B,)
    order = importance.masked_fill(~eligible, float("-inf")).argsort(dim=1, descending=True, stable=True)
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(order.shape[1], device=order.device)
                                            .expand_as(order).contiguous())
    return eligible & (rank < count[:, None])


def random_mask(kinds: Tensor, modalities: int, ratio: float, generator: torch.Generator | None = None) -> Tensor:
    """bool (B, T): the same count as `top_r_mask`, of a random present modality's tokens chosen at random
    (SynGR's w/o-SM ablation)."""
    present = torch.stack([(kinds == m).any(dim=1) for m in range(modalities)], dim=1)    # (B, M)
    pick = torch.rand(present.shape, generator=generator, device=kinds.device).masked_fill(~present, -1.0)
    noise = torch.rand(kinds.shape, generator=generator, device=kinds.device)
    return top_r_mask(noise, kinds, pick.argmax(dim=1), ratio)
