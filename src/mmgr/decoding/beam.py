"""Batched beam search constrained to the catalog's semantic IDs (a `PrefixTrie`), for encoder-decoder generators.

The encoder runs once per user. Each of the L decoder steps feeds only the last token of every beam (key/value
cache), scores the children of every beam in the trie with tensor ops over (B, beams x window) and keeps the best
`beam_size` partial tuples per user. Beams never move between users, so only the decoder's self-attention cache is
reordered; the cross-attention keys/values stay per user.

Two decoders give the same numbers (tests check it):
- `"t5"` (default for `T5ForConditionalGeneration` and subclasses that keep its `forward`): runs the T5 decoder
  blocks' own modules step by step with its own cache and folds the beams of a user into the query axis of
  cross-attention, so the encoder states are projected and read once per user instead of once per beam.
- `"hf"`: any Hugging Face encoder-decoder through `model(..., cache=cache, use_cache=True)` (the cache keyword as
  the installed transformers names it: `past_key_values` before version 5).
`reference_beam_search` is the readable per-user version without a cache, the ground truth for both.
"""

from __future__ import annotations

import contextlib
from typing import Literal, Protocol

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from mmgr.decoding.trie import NO_NODE, DictTrie, PrefixTrie
from mmgr.kvcache import cache_argument, returned_cache
from mmgr.models.modes import eval_mode

Decoder = Literal["auto", "t5", "hf"]


@torch.inference_mode()
def constrained_beam_search(model: nn.Module, input_ids: Tensor, attention_mask: Tensor, trie: PrefixTrie,
                            beam_size: int = 20, top_k: int = 10, *, chunk_size: int = 64, decoder: Decoder = "auto",
                            autocast_dtype: torch.dtype | None = None,
                            row_beams: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Best `top_k` distinct items per user, best first.

    input_ids, attention_mask: (B, S) histories as tokens, left- or right-padded. Returns item indices (B, top_k)
    int64 (rows of `trie.item_tokens`; -1 pads a row when fewer than `top_k` items can be reached) and their sequence
    log-probabilities (B, top_k) float32 (-inf for padding): sums of log_softmax over the whole vocabulary, i.e. the
    model's unconstrained probability of the item's tuple (an onboarded item's code that no catalog item has under
    its prefix scored as its best catalog sibling's: `PrefixTrie.borrowing`). Every returned index is a real item.

    `row_beams` (B,), each at most `beam_size`: a beam width per user, each user's result the one a search of its
    own width gives (so requests of several widths are one search).

    Users are decoded `chunk_size` at a time, grouped by history length with the padding columns that a whole group
    shares cut off (less encoder and cross-attention work, intermediates that stay in cache); results come back in
    the input order. The model is put in eval mode for the call (its train/eval state is restored afterwards).
    """
    if not 1 <= top_k <= beam_size:
        raise ValueError(f"need 1 <= top_k <= beam_size, got top_k={top_k}, beam_size={beam_size}")
    if input_ids.shape != attention_mask.shape or input_ids.ndim != 2:
        raise ValueError(f"input_ids {tuple(input_ids.shape)} and attention_mask {tuple(attention_mask.shape)} must "
                         "be the same (B, S) shape")
    if trie.device != input_ids.device:   # move it once yourself (`trie.to(device)`) to save a copy per call
        trie = trie.to(input_ids.device)
    items = torch.full((len(input_ids), top_k), NO_NODE, dtype=torch.int64, device=input_ids.device)
    scores = torch.full((len(input_ids), top_k), float("-inf"), device=input_ids.device)
    order = attention_mask.sum(dim=1).argsort(descending=True, stable=True)  # (B,) longest histories first
    start = _start_token(model, input_ids.device)
    workspace: dict = {}                                                    # decoder buffers shared by the chunks
    with eval_mode(model), _autocast(autocast_dtype, input_ids.device):
        for users in order.split(chunk_size):
            ids, mask = _trim_padding(input_ids[users], attention_mask[users])
            encoder_states = model.get_encoder()(input_ids=ids, attention_mask=mask).last_hidden_state  # (b, S', D)
            step = _make_decoder(model, encoder_states, mask, decoder, trie.depth, workspace)
            nodes, beam_scores = search_trie(step, trie, len(users), beam_size, start, chunk_beams(row_beams, users))
            items[users], scores[users] = top_items(trie, nodes, beam_scores, top_k)
    return items, scores


def chunk_beams(row_beams: Tensor | None, users: Tensor) -> Tensor | None:
    return None if row_beams is None else row_beams.to(users.device)[users]


def _trim_padding(input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor]:
    """Drop the leading and trailing columns that are padding in every row. (T5's encoder position bias depends
    only on distances, so shifting every token by the same amount changes nothing.)"""
    used = attention_mask.bool().any(dim=0).nonzero()[:, 0]                # (S_used,)
    if len(used) == 0:
        return input_ids[:, :1], attention_mask[:, :1]
    first, last = int(used[0]), int(used[-1]) + 1
    return input_ids[:, first:last], attention_mask[:, first:last]


def search_trie(step: Step, trie: PrefixTrie, batch: int, beam_size: int, start: Tensor,
                row_beams: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """L steps of beam search; returns the final beams' nodes and scores (B, K), best first, -1 / -inf if dead.

    `row_beams` (B,) <= `beam_size`: each user's own width. A user's beams past its width are killed at every step,
    so its first beams are exactly those of a search of that width alone (candidates are ordered by a stable sort:
    equal scores keep their index order whatever the width)."""
    narrow = None if row_beams is None else torch.arange(beam_size, device=start.device)[None] >= row_beams[:, None]
    nodes = torch.zeros(batch, 1, dtype=torch.int64, device=start.device)   # (B, k): every user starts at the root
    scores = torch.zeros(batch, 1, device=start.device)                     # (B, k)
    tokens = start.expand(batch)                                            # (B * k,)
    for depth in range(trie.depth):
        beams = nodes.shape[1]
        low, width = trie.window_start[depth], trie.window_size[depth]
        logits = step(tokens).float()                                       # (B * k, V)
        log_probs = logits[:, low:low + width] - logits.logsumexp(dim=-1, keepdim=True)  # (B * k, W)
        children = trie.children_window(nodes.reshape(-1), depth)          # (B * k, W)
        log_probs = trie.borrowed(nodes.reshape(-1), depth, log_probs, children)   # onboarded items' collision codes
        candidates = scores[..., None] + log_probs.view(batch, beams, width)  # (B, k, W)
        candidates = candidates.masked_fill(children.view(batch, beams, width) < 0, float("-inf"))
        keep = min(beam_size, beams * width)
        scores, flat = candidates.view(batch, beams * width).sort(dim=1, descending=True, stable=True)
        scores, flat = scores[:, :keep], flat[:, :keep]                     # (B, K)
        nodes = children.view(batch, beams * width).gather(1, flat)        # (B, K)
        dead = nodes < 0 if narrow is None else (nodes < 0) | narrow[:, :keep]
        scores = scores.masked_fill(dead, float("-inf"))
        parent = torch.div(flat, width, rounding_mode="floor")              # (B, K) beam index within the user
        tokens = (flat - parent * width + low).reshape(-1)                  # (B * K,)
        if depth + 1 < trie.depth:
            origin = (torch.arange(batch, device=flat.device)[:, None] * beams + parent).reshape(-1)  # (B * K,)
            step.reorder(origin, beams=keep)
    return nodes, scores


def top_items(trie: PrefixTrie, nodes: Tensor, scores: Tensor, top_k: int) -> tuple[Tensor, Tensor]:
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

class Step(Protocol):
    def __call__(self, tokens: Tensor) -> Tensor: ...

    def reorder(self, origin: Tensor, beams: int) -> None:
        """Rows now continue rows `origin` (R',) of the previous step; `beams` rows per user, user-major."""


def _make_decoder(model: nn.Module, encoder_states: Tensor, attention_mask: Tensor, decoder: Decoder,
                  steps: int, workspace: dict) -> Step:
    from transformers import T5ForConditionalGeneration

    if decoder == "auto":   # a subclass that changes forward() is stepped through its own forward
        plain_t5 = isinstance(model, T5ForConditionalGeneration) and \
            type(model).forward is T5ForConditionalGeneration.forward
        decoder = "t5" if plain_t5 else "hf"
    if decoder == "t5":
        return T5Step(model, encoder_states, attention_mask, steps, workspace)
    if decoder == "hf":
        return HFStep(model, encoder_states, attention_mask)
    raise ValueError(f"unknown decoder {decoder!r} (auto, t5, hf)")


class HFStep:
    """Any Hugging Face encoder-decoder, stepped through `forward` with its `EncoderDecoderCache`."""

    def __init__(self, model: nn.Module, encoder_states: Tensor, attention_mask: Tensor):
        self.model, self.encoder_states, self.attention_mask = model, encoder_states, attention_mask  # (B, S, D)
        self.rows_states, self.rows_mask = encoder_states, attention_mask   # per row (R, S, D), (R, S)
        self.cache = None
        self.cache_argument = cache_argument(model)
        self.beams = 1

    def __call__(self, tokens: Tensor) -> Tensor:
        from transformers.modeling_outputs import BaseModelOutput

        out = self.model(encoder_outputs=BaseModelOutput(last_hidden_state=self.rows_states),
                         attention_mask=self.rows_mask, decoder_input_ids=tokens[:, None], use_cache=True,
                         **{self.cache_argument: self.cache})
        self.cache = returned_cache(out)
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

    Uses the model's own weights and submodules (layer norms, projections, relative position bias, feed-forward), so
    it follows the checkpoint exactly. Cross-attention keys/values (B, H, S, dk) are projected once per user.
    Self-attention keys/values live in one time-major buffer (steps, R, layers, 2, H, dk): a step writes its slice in
    place and a reorder is one index_select over the rows of the filled steps.
    """

    def __init__(self, model: nn.Module, encoder_states: Tensor, attention_mask: Tensor, steps: int,
                 workspace: dict | None = None):
        config, self.decoder, self.model = model.config, model.get_decoder(), model
        self.workspace = {} if workspace is None else workspace           # (shape, dtype) -> cache buffers
        self.heads, self.head_dim, self.steps = config.num_heads, config.d_kv, steps
        self_attention = [block.layer[0].SelfAttention for block in self.decoder.block]
        cross_attention = [block.layer[1].EncDecAttention for block in self.decoder.block]
        self.qkv = [torch.cat([a.q.weight, a.k.weight, a.v.weight]) for a in self_attention]  # (3 H dk, D) per layer
        batch, length = encoder_states.shape[:2]
        self.cross = []                                       # per layer: keys (B, H, dk, S), values (B, H, S, dk)
        for attention in cross_attention:
            kv = F.linear(encoder_states, torch.cat([attention.k.weight, attention.v.weight]))  # (B, S, 2 H dk)
            kv = kv.view(batch, length, 2, self.heads, self.head_dim)
            self.cross.append((kv[:, :, 0].permute(0, 2, 3, 1).contiguous(), kv[:, :, 1].transpose(1, 2).contiguous()))
        dtype = encoder_states.dtype
        self.cross_bias = (1.0 - attention_mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min  # (B,1,1,S)
        bias = self_attention[0].compute_bias(steps, steps, device=encoder_states.device)  # (1, H, steps, steps)
        self.position_bias = bias[0].permute(1, 2, 0)                      # (query t, key t', H)
        self.cache: Tensor | None = None                                    # (steps, R, layers, 2, H, dk)
        self.length = 0                                                     # decoder tokens seen

    def __call__(self, tokens: Tensor) -> Tensor:
        batch = len(self.cross_bias)
        hidden = self.decoder.embed_tokens(tokens)                         # (R, D)
        for index, block in enumerate(self.decoder.block):
            hidden = hidden + self._self_attention(index, block.layer[0], hidden)
            hidden = hidden + self._cross_attention(index, block.layer[1], hidden, batch)
            hidden = block.layer[-1](hidden)                                # feed-forward with its residual
        self.length += 1
        hidden = self.decoder.final_layer_norm(hidden)
        if getattr(self.model.config, "scale_decoder_outputs", self.model.config.tie_word_embeddings):
            hidden = hidden * (self.model.config.d_model ** -0.5)
        return self.model.lm_head(hidden)                                  # (R, V)

    def _self_attention(self, index: int, layer: nn.Module, hidden: Tensor) -> Tensor:
        rows, now = len(hidden), self.length
        qkv = F.linear(layer.layer_norm(hidden), self.qkv[index]).view(rows, 3, self.heads, self.head_dim)
        if self.cache is None:
            self.cache = qkv.new_empty(self.steps, rows, len(self.qkv), 2, self.heads, self.head_dim)
        self.cache[now, :, index] = qkv[:, 1:]                            # this step's key and value (R, 2, H, dk)
        keys, values = self.cache[:now + 1, :, index].unbind(2)            # (t + 1, R, H, dk) each
        scores = (keys * qkv[None, :, 0]).sum(-1) + self.position_bias[now, :now + 1, None]  # (t + 1, R, H)
        weights = scores.float().softmax(dim=0).to(values.dtype)[..., None]  # (t + 1, R, H, 1); T5: no scaling
        out = weights[0] * values[0]                                        # (R, H, dk): sum over the t + 1 keys
        for past in range(1, now + 1):
            out.addcmul_(weights[past], values[past])
        return layer.SelfAttention.o(out.reshape(rows, -1))                # (R, D)

    def _cross_attention(self, index: int, layer: nn.Module, hidden: Tensor, batch: int) -> Tensor:
        attention, rows = layer.EncDecAttention, len(hidden)
        query = attention.q(layer.layer_norm(hidden))                      # (R, H * dk)
        query = query.view(batch, rows // batch, self.heads, self.head_dim).transpose(1, 2)  # (B, H, k, dk)
        keys_t, values = self.cross[index]                                  # (B, H, dk, S), (B, H, S, dk)
        scores = torch.matmul(query, keys_t) + self.cross_bias              # (B, H, k, S); T5: no scaling
        out = torch.matmul(scores.float().softmax(dim=-1).to(values.dtype), values)  # (B, H, k, dk)
        return attention.o(out.transpose(1, 2).reshape(rows, -1))          # (R, D)

    def reorder(self, origin: Tensor, beams: int) -> None:
        filled = self.cache[:self.length]                                   # (t, R, layers, 2, H, dk)
        cache = self._buffer((self.steps, len(origin), *filled.shape[2:]), filled)
        torch.index_select(filled, 1, origin, out=cache[:self.length])
        self.cache = cache

    def _buffer(self, shape: tuple[int, ...], current: Tensor) -> Tensor:
        """A cache buffer of `shape` that is not `current`: two per shape, reused across steps and chunks (fresh
        multi-MB allocations cost page faults on every step)."""
        pair = self.workspace.setdefault((shape, current.dtype), [])
        for buffer in pair:
            if buffer.data_ptr() != current.data_ptr():
                return buffer
        pair.append(current.new_empty(shape))
        return pair[-1]


# ---- readable reference -----------------------------------------------------------------------------------------

@torch.inference_mode()
def reference_beam_search(model: nn.Module, input_ids: Tensor, attention_mask: Tensor, trie: PrefixTrie,
                          beam_size: int = 20, top_k: int = 10) -> tuple[Tensor, Tensor]:
    """Same contract as `constrained_beam_search`, one user at a time, re-running the whole decoder on every prefix
    (no cache) and walking the dict trie. Slow; the ground truth in tests."""
    reference = trie.reference()
    start = int(_start_token(model, input_ids.device))
    all_items, all_scores = [], []
    with eval_mode(model):
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


def _expand(model: nn.Module, history: Tensor, beams: list[tuple[list[int], float]], reference: DictTrie,
            start: int) -> list[tuple[list[int], float]]:
    """Every allowed one-token extension of every beam, best first (one model call on all beams, no cache)."""
    decoder_input = torch.tensor([[start, *tokens] for tokens, _ in beams])        # (k, t + 1)
    logits = model(input_ids=history.expand(len(beams), -1), decoder_input_ids=decoder_input).logits[:, -1]
    log_probs = logits.float().log_softmax(dim=-1)                                 # (k, V)
    candidates = [([*tokens, t], score + float(log_probs[beam, t]))
                  for beam, (tokens, score) in enumerate(beams) for t in reference.allowed_tokens_reference(tokens)]
    return sorted(candidates, key=lambda c: -c[1])


def sequence_log_probs(model: nn.Module, input_ids: Tensor, attention_mask: Tensor, tokens: Tensor) -> Tensor:
    """Teacher-forced log-probability of each token tuple: input (B, S), tokens (B, n, L) -> (B, n)."""
    batch, n, length = tokens.shape
    start = _start_token(model, tokens.device)
    decoder_input = torch.cat([start.expand(batch * n, 1), tokens.reshape(-1, length)[:, :-1]], dim=1)
    with torch.inference_mode(), eval_mode(model):
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


def _autocast(dtype: torch.dtype | None, device: torch.device) -> contextlib.AbstractContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
