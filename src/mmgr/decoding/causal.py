"""Trie-constrained beam search for causal (decoder-only) generators, continuing after the history prompt.

Same trie, same beam step (`search_trie`) and same result contract as the encoder-decoder search in
`mmgr.decoding.beam`: item indices (B, top_k) best first (-1 pads), and their sequence log-probabilities (sums of
log_softmax over the whole vocabulary). The prompt is run once per user (left-aligned, positions from the attention
mask); each of the L steps feeds one token per beam. Two decoders give the same numbers (tests check it):

- `"llama"` (default for Llama-architecture models, the causal backbone): the prompt's keys and values stay once per
  user and the user's beams are folded into the query axis to read them; only the L generated tokens have per-beam
  keys and values. Nothing of the prompt is copied per beam, appended to or reordered (a profile of the plain
  cached search: 54% of its time was the cache's concatenation and reordering).
- `"hf"`: any Hugging Face causal LM through its own key/value cache, reordered with the beams.

`reference_causal_beam_search` re-runs the whole sequence for every prefix without a cache, one user at a time: the
ground truth in tests.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from mmgr.decoding.beam import chunk_beams, search_trie, top_items
from mmgr.decoding.trie import NO_NODE, PrefixTrie
from mmgr.kvcache import cache_argument, layer_keys_values, returned_cache
from mmgr.models.modes import eval_mode

CausalDecoder = Literal["auto", "llama", "hf"]


@torch.inference_mode()
def causal_beam_search(model: nn.Module, input_ids: Tensor, attention_mask: Tensor, trie: PrefixTrie,
                       beam_size: int = 20, top_k: int = 10, *, chunk_size: int = 64,
                       decoder: CausalDecoder = "auto", row_beams: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Best `top_k` distinct items per user after the prompts `input_ids` (B, S), left- or right-padded; `row_beams`
    (B,) as in `constrained_beam_search`."""
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
            step = _make_step(model, ids, mask, decoder)
            nodes, beam_scores = search_trie(step, trie, len(users), beam_size, dummy, chunk_beams(row_beams, users))
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


def _make_step(model: nn.Module, input_ids: Tensor, attention_mask: Tensor, decoder: CausalDecoder):
    from transformers import LlamaForCausalLM

    if decoder == "auto" and hasattr(model, "beam_step"):   # a model with its own step (item-causal)
        return model.beam_step(input_ids, attention_mask)
    if decoder == "auto":   # a subclass that changes forward() is stepped through its own forward
        plain = isinstance(model, LlamaForCausalLM) and type(model).forward is LlamaForCausalLM.forward
        decoder = "llama" if plain else "hf"
    if decoder == "llama":
        return SharedPromptLlamaStep(model, input_ids, attention_mask)
    if decoder == "hf":
        return CausalStep(model, input_ids, attention_mask)
    raise ValueError(f"unknown decoder {decoder!r} (auto, llama, hf)")


def _prefill(model: nn.Module, input_ids: Tensor, mask: Tensor):
    """Run the prompts (B, S) once with a key/value cache: (next-token logits (B, V), the model output)."""
    positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
    out = model(input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1)
    return out.logits[:, -1], out


class CausalStep:
    """The `Step` protocol of `search_trie` for a Hugging Face causal LM with its key/value cache."""

    def __init__(self, model: nn.Module, input_ids: Tensor, attention_mask: Tensor):
        self.model, self.input_ids, self.mask = model, input_ids, attention_mask   # (B, S) left-padded
        self.positions = attention_mask.sum(dim=1) - 1                     # (R,) position of each row's last token
        self.cache, self.cache_argument = None, cache_argument(model)

    def __call__(self, tokens: Tensor) -> Tensor:
        if self.cache is None:                                              # prefill the prompts
            logits, out = _prefill(self.model, self.input_ids, self.mask)
            self.cache = returned_cache(out)
            return logits
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


class SharedPromptLlamaStep:
    """The `Step` protocol for Llama-architecture models (transformers' Llama modules, run layer by layer): the
    prompt's keys and values (B, Hkv, S, d) are kept once per user; the beams of a user (rows user-major) read them
    with their queries folded together, and only generated tokens get per-row keys and values (R, Hkv, t, d)."""

    def __init__(self, model: nn.Module, input_ids: Tensor, attention_mask: Tensor):
        self.model, self.input_ids, self.mask = model, input_ids, attention_mask   # (B, S) left-padded
        self.users, self.beams = len(input_ids), 1
        self.positions = attention_mask.sum(dim=1) - 1                     # (R,) position of each row's last token
        self.prompt: list[tuple[Tensor, Tensor]] = []                      # per layer (B, Hkv, S, d) keys, values
        self.generated: list[tuple[Tensor, Tensor]] = []                   # per layer (R, Hkv, t, d)

    def __call__(self, tokens: Tensor) -> Tensor:
        if not self.prompt:
            logits, out = _prefill(self.model, self.input_ids, self.mask)
            cache = returned_cache(out)
            self.prompt = [layer_keys_values(cache, i) for i in range(len(self.model.model.layers))]
            dtype = self.prompt[0][0].dtype
            self.bias = torch.zeros(self.mask.shape, dtype=dtype, device=self.mask.device).masked_fill(
                self.mask == 0, torch.finfo(dtype).min)[:, None, None, :]  # (B, 1, 1, S)
            return logits
        from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

        body = self.model.model
        self.positions = self.positions + 1
        x = body.embed_tokens(tokens)[:, None, :]                           # (R, 1, D)
        cos, sin = body.rotary_emb(x, position_ids=self.positions[:, None])
        grown = []
        for index, layer in enumerate(body.layers):
            attention = layer.self_attn
            hidden = layer.input_layernorm(x)
            q, k, v = (proj(hidden).view(len(x), 1, -1, attention.head_dim).transpose(1, 2)
                       for proj in (attention.q_proj, attention.k_proj, attention.v_proj))   # (R, H|Hkv, 1, d)
            q, k = apply_rotary_pos_emb(q, k, cos, sin)
            if self.generated:
                old_k, old_v = self.generated[index]
                k, v = torch.cat([old_k, k], dim=2), torch.cat([old_v, v], dim=2)  # (R, Hkv, t, d)
            grown.append((k, v))
            x = x + attention.o_proj(self._attend(index, q, k, v, attention.scaling))
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        self.generated = grown
        return self.model.lm_head(body.norm(x))[:, -1]                     # (R, V)

    def _attend(self, index: int, q: Tensor, k: Tensor, v: Tensor, scaling: float) -> Tensor:
        """Attention of one new token per row over its user's prompt and its own generated tokens: (R, 1, H * d)."""
        prompt_k, prompt_v = self.prompt[index]                            # (B, Hkv, S, d)
        users, kv_heads, _, dim = prompt_k.shape
        rows, beams, groups = len(q), self.beams, q.shape[1] // kv_heads
        q = q.view(users, beams, kv_heads, groups, dim)                    # head h = kv head h // groups
        folded = q.permute(0, 2, 3, 1, 4).reshape(users, kv_heads, groups * beams, dim)
        on_prompt = (folded @ prompt_k.transpose(-1, -2)) * scaling + self.bias   # (B, Hkv, G * beams, S)
        on_prompt = on_prompt.view(users, kv_heads, groups, beams, -1).permute(0, 3, 1, 2, 4).reshape(
            rows, kv_heads, groups, -1)                                    # (R, Hkv, G, S)
        own = (q.reshape(rows, kv_heads, groups, dim) @ k.transpose(-1, -2)) * scaling  # (R, Hkv, G, t)
        weights = torch.cat([on_prompt, own], dim=-1).float().softmax(dim=-1).to(q.dtype)
        prompt_part = weights[..., :on_prompt.shape[-1]].reshape(users, beams, kv_heads, groups, -1).permute(
            0, 2, 3, 1, 4).reshape(users, kv_heads, groups * beams, -1) @ prompt_v   # (B, Hkv, G * beams, d)
        prompt_part = prompt_part.view(users, kv_heads, groups, beams, dim).permute(0, 3, 1, 2, 4).reshape(
            rows, kv_heads, groups, dim)
        own_part = weights[..., on_prompt.shape[-1]:] @ v                  # (R, Hkv, G, d)
        return (prompt_part + own_part).reshape(rows, 1, kv_heads * groups * dim)

    def reorder(self, origin: Tensor, beams: int) -> None:
        """Rows continue rows `origin` of the same user: only the generated keys and values move."""
        self.generated = [(k[origin], v[origin]) for k, v in self.generated]
        self.positions, self.beams = self.positions[origin], beams


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
