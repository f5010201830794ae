"""Batched beam search constrained to the catalog's semantic IDs (a `PrefixTrie`), for encoder-decoder generators.

The encoder runs once per user. Each of the L decoder steps feeds only the last token of every beam (key/value
cache), scores the children of every beam in the trie with tensor ops over (B, beams x window) and keeps the best
`beam_size` partial tuples per user. Beams never move between users, so only the decoder's self-attention cache is
reordered; the cross-attention keys/values stay per user.

Two decoders give the same numbers (tests check it):
- `"t5"` (default for `T5ForConditionalGeneration`): runs the T5 decoder blocks' own modules step by step with its
  own cache and folds the beams of a user into the query axis of cross-attention, so the encoder states are
  projected and read once per user instead of once per beam.
- `"hf"`: any Hugging Face encoder-decoder through `model(..., past_key_values=cache, use_cache=True)`.
`reference_beam_search` is the readable per-user version without a cache, the ground truth for both.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Literal, Protocol

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from mmgr.decoding.trie import NO_NODE, PrefixTrie

Decoder = Literal["auto", "t5", "hf"]


@torch.inference_mode()
def constrained_beam_search(model: nn.Module, input_ids: Tensor, attention_mask: Tensor, trie: PrefixTrie,
                            beam_size: int = 20, top_k: int = 10, *, decoder: Decoder = "auto",
                            autocast_dtype: torch.dtype | None = None) -> tuple[Tensor, Tensor]:
    """Best `top_k` distinct items per user, best first.

    input_ids, attention_mask: (B, S) histories as tokens (any padding side). Returns item indices (B, top_k) int64
    (rows of `trie.item_tokens`; -1 pads rows when fewer than `top_k` items can be reached) and their sequence
    log-probabilities (B, top_k) float32 (-inf for padding): sums of log_softmax over the whole vocabulary, i.e. the
    model's unconstrained probability of the item's tuple. Every returned index is a real item.
    """
    if not 1 <= top_k <= beam_size:
        raise ValueError(f"need 1 <= top_k <= beam_size, got top_k={top_k}, beam_size={beam_size}")
    with _eval_mode(model), _autocast(autocast_dtype, input_ids.device):
        encoder_states = model.get_encoder()(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        step = _make_decoder(model, encoder_states, attention_mask, decoder)
        nodes, scores = _search(step, trie, len(input_ids), beam_size, _start_token(model, input_ids.device))
    return _top_items(trie, nodes, scores, top_k)


def _search(step: _Step, trie: PrefixTrie, batch: int, beam_size: int, start: Tensor) -> tuple[Tensor, Tensor]:
    """L steps of beam search; returns the final beams' nodes and scores (B, K), best first, -1 / -inf if dead."""
    nodes = torch.zeros(batch, 1, dtype=torch.int64, device=start.device)   # (B, k): every user starts at the root
    scores = torch.zeros(batch, 1, device=start.device)                     # (B, k)
    tokens = start.expand(batch)                                            # (B * k,)
    for depth in range(trie.depth):
        beams = nodes.shape[1]
        low, width = trie.window_start[depth], trie.window_size[depth]
        logits = step(tokens).float()                                       # (B * k, V)
        log_probs = logits[:, low:low + width] - logits.logsumexp(dim=-1, keepdim=True)  # (B * k, W)
        children = trie.children_window(nodes.reshape(-1), depth)          # (B * k, W)
        candidates = scores[..., None] + log_probs.view(batch, beams, width)  # (B, k, W)
        candidates = candidates.masked_fill(children.view(batch, beams, width) < 0, float("-inf"))
        keep = min(beam_size, beams * width)
        scores, flat = candidates.view(batch, beams * width).topk(keep, dim=1)  # (B, K), sorted
        nodes = children.view(batch, beams * width).gather(1, flat)        # (B, K)
        scores = scores.masked_fill(nodes < 0, float("-inf"))
        parent = torch.div(flat, width, rounding_mode="floor")              # (B, K) beam index within the user
        tokens = (flat - parent * width + low).reshape(-1)                  # (B * K,)
        if depth + 1 < trie.depth:
            origin = (torch.arange(batch, device=flat.device)[:, None] * beams + parent).reshape(-1)  # (B * K,)
            step.reorder(origin, beams=keep)
    return nodes, scores


def _top_items(trie: PrefixTrie, nodes: Tensor, scores: Tensor, top_k: int) -> tuple[Tensor, Tensor]:
    """First `top_k` beams as items (padded with -1 / -inf); dead beams (-inf or no node) never become items."""
    items = trie.items_of(nodes)                                            # (B, K)
    dead = (items < 0) | ~torch.isfinite(scores)
    items, scores = items.masked_fill(dead, NO_NODE), scores.masked_fill(dead, float("-inf"))
    missing = top_k - items.shape[1]
    if missing > 0:
        items = F.pad(items, (0, missing), value=NO_NODE)
        scores = F.pad(scores, (0, missing), value=float("-inf"))
    return items[:, :top_k], scores[:, :top_k]


# ---- decoders: last tokens (R,) -> next-token logits (R, V), R = users x beams --------------------------------------

class _Step(Protocol):
    def __call__(self, tokens: Tensor) -> Tensor: ...

    def reorder(self, origin: Tensor, beams: int) -> None:
        """Rows now continue rows `origin` (R',) of the previous step; `beams` rows per user, user-major."""


def _make_decoder(model: nn.Module, encoder_states: Tensor, attention_mask: Tensor, decoder: Decoder) -> _Step:
    from transformers import T5ForConditionalGeneration

    if decoder == "auto":
        decoder = "t5" if isinstance(model, T5ForConditionalGeneration) else "hf"
    if decoder == "t5":
        return T5Step(model, encoder_states, attention_mask)
    if decoder == "hf":
        return HFStep(model, encoder_states, attention_mask)
    raise ValueError(f"unknown decoder {decoder!r} (auto, t5, hf)")


class HFStep:
    """Any Hugging Face encoder-decoder, stepped through `forward` with its `EncoderDecoderCache`."""

    def __init__(self, model: nn.Module, encoder_states: Tensor, attention_mask: Tensor):
        self.model, self.encoder_states, self.attention_mask = model, encoder_states, attention_mask  # (B, S, D)
        self.rows_states, self.rows_mask = encoder_states, attention_mask   # per row (R, S, D), (R, S)
        self.cache = None
        self.beams = 1

    def __call__(self, tokens: Tensor) -> Tensor:
        from transformers.modeling_outputs import BaseModelOutput

        out = self.model(encoder_outputs=BaseModelOutput(last_hidden_state=self.rows_states),
                         attention_mask=self.rows_mask, decoder_input_ids=tokens[:, None],
                         past_key_values=self.cache, use_cache=True)
        self.cache = out.past_key_values
        return out.logits[:, -1]                                            # (R, V)

    def reorder(self, origin: Tensor, beams: int) -> None:
        if beams == self.beams:   # same users per row: the cross-attention cache is already right
            self.cache.self_attention_cache.reorder_cache(origin)
            return
        self.cache.reorder_cache(origin)
        users = torch.arange(len(self.encoder_states), device=origin.device).repeat_interleave(beams)  # (R',)
        self.rows_states, self.rows_mask = self.encoder_states[users], self.attention_mask[users]
        self.beams = beams


class T5Step:
    """T5 decoder steps with the beams of a user folded into the query axis of cross-attention.

    Uses the model's own submodules (layer norms, projections, relative position bias, feed-forward), so it follows
    the checkpoint exactly; self-attention keys/values (R, H, t, dk) are cached and reordered per step, cross-attention
    keys/values (B, H, S, dk) are computed once.
    """

    def __init__(self, model: nn.Module, encoder_states: Tensor, attention_mask: Tensor):
        self.model, self.decoder = model, model.get_decoder()
        self.heads, self.head_dim = model.config.num_heads, model.config.d_kv
        batch = len(encoder_states)
        self.cross = [self._split(block.layer[1].EncDecAttention.k(encoder_states), batch) for block in
                      self.decoder.block], [self._split(block.layer[1].EncDecAttention.v(encoder_states), batch)
                                            for block in self.decoder.block]  # 2 x layers x (B, H, S, dk)
        dtype = self.cross[0][0].dtype
        self.cross_bias = ((1.0 - attention_mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min)  # (B,1,1,S)
        self.keys: list[Tensor] = []       # per layer (R, H, t, dk)
        self.values: list[Tensor] = []

    def _split(self, x: Tensor, rows: int) -> Tensor:
        """(rows, T, H * dk) -> (rows, H, T, dk)."""
        return x.view(rows, -1, self.heads, self.head_dim).transpose(1, 2)

    def __call__(self, tokens: Tensor) -> Tensor:
        rows, batch = len(tokens), len(self.cross_bias)
        past = self.keys[0].shape[2] if self.keys else 0
        attention0 = self.decoder.block[0].layer[0].SelfAttention
        position_bias = attention0.compute_bias(1, past + 1, device=tokens.device, past_seen_tokens=past)  # (1,H,1,t+1)
        hidden = self.decoder.embed_tokens(tokens)[:, None, :]             # (R, 1, D)
        for index, block in enumerate(self.decoder.block):
            hidden = hidden + self._self_attention(index, block.layer[0], hidden, position_bias.to(hidden.dtype))
            hidden = hidden + self._cross_attention(index, block.layer[1], hidden, rows, batch)
            hidden = block.layer[-1](hidden)                                # feed-forward with its residual
        hidden = self.decoder.final_layer_norm(hidden)
        if getattr(self.model.config, "scale_decoder_outputs", self.model.config.tie_word_embeddings):
            hidden = hidden * (self.model.config.d_model ** -0.5)
        return self.model.lm_head(hidden)[:, 0]                            # (R, V)

    def _self_attention(self, index: int, layer: nn.Module, hidden: Tensor, position_bias: Tensor) -> Tensor:
        attention, rows = layer.SelfAttention, len(hidden)
        normed = layer.layer_norm(hidden)                                   # (R, 1, D)
        query, key, value = (self._split(proj(normed), rows) for proj in (attention.q, attention.k, attention.v))
        if len(self.keys) > index:
            key = torch.cat([self.keys[index], key], dim=2)                # (R, H, t + 1, dk)
            value = torch.cat([self.values[index], value], dim=2)
            self.keys[index], self.values[index] = key, value
        else:
            self.keys.append(key)
            self.values.append(value)
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=position_bias, scale=1.0)  # (R, H, 1, dk)
        return attention.o(out.transpose(1, 2).reshape(rows, 1, -1))      # (R, 1, D)

    def _cross_attention(self, index: int, layer: nn.Module, hidden: Tensor, rows: int, batch: int) -> Tensor:
        attention, beams = layer.EncDecAttention, rows // batch
        query = attention.q(layer.layer_norm(hidden))                      # (R, 1, H * dk)
        query = query.view(batch, beams, self.heads, self.head_dim).transpose(1, 2)  # (B, H, k, dk)
        key, value = self.cross[0][index], self.cross[1][index]            # (B, H, S, dk)
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=self.cross_bias, scale=1.0)  # (B, H, k, dk)
        return attention.o(out.transpose(1, 2).reshape(rows, 1, -1))      # (R, 1, D)

    def reorder(self, origin: Tensor, beams: int) -> None:
        self.keys = [k.index_select(0, origin) for k in self.keys]
        self.values = [v.index_select(0, origin) for v in self.values]


# ---- readable reference -----------------------------------------------------------------------------------------

@torch.inference_mode()
def reference_beam_search(model: nn.Module, input_ids: Tensor, attention_mask: Tensor, trie: PrefixTrie,
                          beam_size: int = 20, top_k: int = 10) -> tuple[Tensor, Tensor]:
    """Same contract as `constrained_beam_search`, one user at a time, re-running the whole decoder on every prefix
    (no cache) and walking the dict trie. Slow; the ground truth in tests."""
    reference = trie.reference()
    start = int(_start_token(model, input_ids.device))
    all_items, all_scores = [], []
    with _eval_mode(model):
        for row in range(len(input_ids)):
            keep = attention_mask[row].bool()
            history = input_ids[row][keep][None]                            # (1, S_u)
            beams: list[tuple[list[int], float]] = [([], 0.0)]
            for _ in range(trie.depth):
                beams = _expand(model, history, beams, reference, start)[:beam_size]
            ranked = [(reference.item(tokens), score) for tokens, score in beams][:top_k]
            ranked += [(NO_NODE, float("-inf"))] * (top_k - len(ranked))
            all_items.append([item for item, _ in ranked])
            all_scores.append([score for _, score in ranked])
    return torch.tensor(all_items), torch.tensor(all_scores)


def _expand(model: nn.Module, history: Tensor, beams: list[tuple[list[int], float]], reference,
            start: int) -> list[tuple[list[int], float]]:
    """Every allowed one-token extension of every beam, best first."""
    candidates = []
    for tokens, score in beams:
        decoder_input = torch.tensor([[start, *tokens]])
        logits = model(input_ids=history, decoder_input_ids=decoder_input).logits[0, -1].float()
        log_probs = logits.log_softmax(dim=-1)
        candidates += [([*tokens, t], score + float(log_probs[t]))
                       for t in reference.allowed_tokens_reference(tokens)]
    return sorted(candidates, key=lambda c: -c[1])


def sequence_log_probs(model: nn.Module, input_ids: Tensor, attention_mask: Tensor, tokens: Tensor) -> Tensor:
    """Teacher-forced log-probability of each token tuple: input (B, S), tokens (B, n, L) -> (B, n)."""
    batch, n, length = tokens.shape
    start = _start_token(model, tokens.device)
    decoder_input = torch.cat([start.expand(batch * n, 1), tokens.reshape(-1, length)[:, :-1]], dim=1)
    with torch.inference_mode(), _eval_mode(model):
        logits = model(input_ids=input_ids.repeat_interleave(n, 0), attention_mask=attention_mask.repeat_interleave(
            n, 0), decoder_input_ids=decoder_input).logits.float()          # (B * n, L, V)
    picked = logits.log_softmax(-1).gather(2, tokens.reshape(-1, length, 1))[..., 0]  # (B * n, L)
    return picked.sum(-1).view(batch, n)


# ---- helpers ------------------------------------------------------------------------------------------------------

def _start_token(model: nn.Module, device: torch.device) -> Tensor:
    start = model.config.decoder_start_token_id
    if start is None:
        raise ValueError("the model config has no decoder_start_token_id")
    return torch.tensor([start], dtype=torch.int64, device=device)


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Dropout off while decoding; the caller's train/eval state is restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _autocast(dtype: torch.dtype | None, device: torch.device) -> contextlib.AbstractContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
