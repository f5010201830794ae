"""The item-level causal SID generator (`model.kind=item-causal`): one transformer position per history item.

The token causal backbone (`models/causal.py`) spends a position on every code of every item: a 20-item history of
4-level SIDs is 80+ positions through every layer. Here an item enters as one vector, the sum of its code tokens'
embeddings, so the Llama blocks run over `[<bos>, [<task>], [user], item_1, ..., item_n]` (n + 1 to n + 3 positions;
RoPE positions, SDPA attention). The next item's codes are written by a light head: for level l, the state of the
position before the item, plus a learned level embedding, plus the embeddings of the item's codes chosen so far,
through one pre-norm feed-forward block and the output layer. Like the token backbone it reads and returns token
sequences (`<bos> [<task>] [user] c(item_1) ... c(item_n)`, any padding side) and one forward pass gives a next-
token logit at every position, so its training examples, loss and prompts are the causal backbone's; the beam search
runs the blocks once per user and then only the head for each of the L code steps (`ItemStep`).

The head is teacher-forced with the labels' codes where there are labels (else the input's), so an item slot may be
read in one modality and written in another (MQL4GRec's next image SID from a text history: input codes t(item_i),
labels v(item_i)); with labels equal to the input, as next-item examples are, this is the plain causal LM.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from transformers import LlamaModel
from transformers.modeling_outputs import CausalLMOutput
from transformers.models.llama.modeling_llama import LlamaMLP, LlamaRMSNorm

from mmgr.config import ModelConfig
from mmgr.models.causal import add_hidden_dropout, llama_config
from mmgr.models.dropout import fast_dropout
from mmgr.tokenizers.codes import Vocabulary


class ItemCausalLM(nn.Module):
    def __init__(self, cfg: ModelConfig, vocab: Vocabulary, seed: int, item_width: int, task_tokens: int = 0):
        super().__init__()
        config = llama_config(cfg, vocab, "model.kind=item-causal")
        torch.manual_seed(seed)
        self.body = LlamaModel(config)                        # its embed_tokens is the code-token table
        self.width = item_width                               # L tokens per item, as the layout writes it
        self.head_tokens = 1 + task_tokens + int(vocab.user_buckets > 0)   # <bos> [<task>] [user]
        self.level = nn.Embedding(self.width, cfg.d_model)
        self.head_norm = LlamaRMSNorm(cfg.d_model)
        self.head_mlp = LlamaMLP(config)
        self.out_norm = LlamaRMSNorm(cfg.d_model)
        self.lm_head = nn.Linear(cfg.d_model, vocab.size, bias=False)
        self.hidden_dropout = cfg.hidden_dropout
        add_hidden_dropout(self.body.layers, cfg.hidden_dropout)

    def item_states(self, input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor]:
        """Right-aligned token rows (B, T) -> block outputs (B, H + N, D) over the head tokens and the N whole items
        (a trailing partial item is left out), and the number of whole items per row (B,)."""
        head, width = self.head_tokens, self.width
        items = (input_ids.shape[1] - head) // width
        embedded = self.body.embed_tokens(input_ids)                                  # (B, T, D)
        summed = embedded[:, head:head + items * width].unflatten(1, (items, width)).sum(dim=2)  # (B, N, D)
        x = fast_dropout(torch.cat([embedded[:, :head], summed], dim=1), self.hidden_dropout, self.training)
        counts = (attention_mask.sum(dim=1) - head).clamp(min=0) // width           # (B,)
        mask = torch.arange(head + items, device=x.device)[None] < (head + counts)[:, None]  # (B, H + N)
        positions = torch.arange(head + items, device=x.device)[None].expand(len(x), -1)
        states = self.body(inputs_embeds=x, attention_mask=mask.long(), position_ids=positions,
                           use_cache=False).last_hidden_state            # no key/value cache: read once
        return states, counts

    def head(self, context: Tensor, level: Tensor | int, chosen: Tensor) -> Tensor:
        """Next-code logits (..., V) from the state before the item (..., D), the level, and the summed embeddings
        of the item's codes chosen so far (..., D)."""
        z = context + self.level.weight[level] + chosen
        z = z + fast_dropout(self.head_mlp(self.head_norm(z)), self.hidden_dropout, self.training)
        return self.lm_head(self.out_norm(z))

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, labels: Tensor | None = None,
                **unused) -> CausalLMOutput:
        """Logits (B, T, V): position p scores token p + 1, as a causal LM's; loss over `labels` (-100 ignored)."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        head, width, length = self.head_tokens, self.width, input_ids.shape[1]
        order = right_alignment(attention_mask)
        forced = input_ids if labels is None else torch.where(labels >= 0, labels, input_ids)  # the codes written
        short = max(head - length, 0)                                                # a prompt cut inside the head
        ids, mask, forced = (F.pad(t.gather(1, order), (0, short)) for t in (input_ids, attention_mask, forced))
        states, _ = self.item_states(ids, mask)                                      # (B, H + N, D)
        items = states.shape[1] - head
        context = states[:, head - 1:]                                               # (B, N + 1, D): before each item
        codes = F.pad(forced[:, head:], (0, (items + 1) * width - (ids.shape[1] - head)))  # (B, (N + 1) L)
        chosen = self.body.embed_tokens(codes).unflatten(1, (items + 1, width))      # (B, N + 1, L, D)
        chosen = F.pad(chosen.cumsum(dim=2)[:, :, :-1], (0, 0, 1, 0))                # codes before each level
        levels = torch.arange(width, device=ids.device)
        logits = self.head(context[:, :, None], levels, chosen).flatten(1, 2)       # (B, (N + 1) L, V)
        logits = torch.cat([logits.new_zeros(len(ids), head - 1, logits.shape[-1]), logits], dim=1)
        logits = logits[:, :length]                                                  # (B, T, V)
        if not right_aligned(attention_mask):                                        # back to the input's order
            logits = logits.gather(1, order.argsort(dim=1)[..., None].expand_as(logits))
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten())  # -100 ignored
        return CausalLMOutput(loss=loss, logits=logits)

    def beam_step(self, input_ids: Tensor, attention_mask: Tensor) -> ItemStep:
        return ItemStep(self, input_ids, attention_mask)


def right_aligned(attention_mask: Tensor) -> bool:
    """Every row's tokens come first (right padding, as training batches are)."""
    return bool((attention_mask[:, 1:] <= attention_mask[:, :-1]).all())


def right_alignment(attention_mask: Tensor) -> Tensor:
    """Column order (B, T) that moves each row's tokens to its start, keeping their order (any padding side)."""
    return (attention_mask == 0).to(torch.int8).argsort(dim=1, stable=True)


class ItemStep:
    """The `Step` protocol of `search_trie`: the blocks run once over each user's history; each code step is the
    head alone, from the state after the last whole item and the row's codes chosen so far."""

    def __init__(self, model: ItemCausalLM, input_ids: Tensor, attention_mask: Tensor):
        order = right_alignment(attention_mask)
        ids, mask = input_ids.gather(1, order), attention_mask.gather(1, order)
        states, counts = model.item_states(ids, mask)                               # (B, H + N, D), (B,)
        self.model, self.level = model, 0
        self.context = states[torch.arange(len(states)), model.head_tokens - 1 + counts]  # (B, D)
        self.chosen = torch.zeros_like(self.context)                                # (R, D)

    def __call__(self, tokens: Tensor) -> Tensor:
        if self.level:
            self.chosen = self.chosen + self.model.body.embed_tokens(tokens)
        logits = self.model.head(self.context, self.level, self.chosen)           # (R, V)
        self.level += 1
        return logits

    def reorder(self, origin: Tensor, beams: int) -> None:
        self.context, self.chosen = self.context[origin], self.chosen[origin]


def build_item_causal(cfg: ModelConfig, vocab: Vocabulary, seed: int, item_width: int,
                      task_tokens: int) -> ItemCausalLM:
    return ItemCausalLM(cfg, vocab, seed, item_width, task_tokens)
