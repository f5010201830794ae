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
labels v(item_i)); with labels equal to the input, as next-item examples are, this is the plain causal LM. A target
may be narrower than a history item (`target_width`: SynGR's bimodal items hold a text and an image SID, the head
writes one of them): the head writes the first `target_width` slots of each item and the rest score nothing.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from transformers import LlamaModel
from transformers.modeling_outputs import CausalLMOutput
from transformers.models.llama.modeling_llama import LlamaMLP, LlamaRMSNorm

from mmgr.config import ModelConfig
from mmgr.errors import MmgrError
from mmgr.models.causal import add_hidden_dropout, llama_config
from mmgr.models.dropout import fast_dropout
from mmgr.models.modes import eval_mode
from mmgr.tokenizers.codes import Vocabulary


class ItemCausalLM(nn.Module):
    forward_methods = ("input_saliency",)    # run by a loss through the training wrapper (full precision inside)
    def __init__(self, cfg: ModelConfig, vocab: Vocabulary, seed: int, item_width: int, task_tokens: int = 0,
                 target_width: int | None = None):
        super().__init__()
        if target_width is not None and not 0 < target_width <= item_width:
            raise MmgrError(f"model.kind=item-causal writes each target within one history item's tokens; the "
                            f"layout writes history items of {item_width} tokens and targets of {target_width}; "
                            f"use model.kind=t5")
        config = llama_config(cfg, vocab, "model.kind=item-causal")
        torch.manual_seed(seed)
        self.body = LlamaModel(config)                        # its embed_tokens is the code-token table (<pad>: 0)
        self.width = item_width                               # L tokens per history item, as the layout writes it
        self.target_width = target_width or item_width        # L_t <= L codes the head writes per item
        self.head_tokens = 1 + task_tokens + int(vocab.user_buckets > 0)   # <bos> [<task>] [user]
        self.level = nn.Embedding(self.target_width, cfg.d_model)
        self.head_norm = LlamaRMSNorm(cfg.d_model)
        self.head_mlp = LlamaMLP(config)
        self.out_norm = LlamaRMSNorm(cfg.d_model)
        self.lm_head = nn.Linear(cfg.d_model, vocab.size, bias=False)
        self.hidden_dropout = cfg.hidden_dropout
        add_hidden_dropout(self.body.layers, cfg.hidden_dropout)

    def item_states(self, input_ids: Tensor, attention_mask: Tensor,
                    embedded: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Right-aligned token rows (B, T) -> block outputs (B, H + N, D) over the head tokens and the N whole items
        (a trailing partial item is left out), and the number of whole items per row (B,). `embedded` (B, T, D):
        the rows' token embeddings, when the caller needs their gradient; a <pad> inside an item adds nothing."""
        head, width = self.head_tokens, self.width
        items = (input_ids.shape[1] - head) // width
        if embedded is None:
            embedded = self.body.embed_tokens(input_ids)                              # (B, T, D)
        summed = embedded[:, head:head + items * width].unflatten(1, (items, width)).sum(dim=2)  # (B, N, D)
        x = fast_dropout(torch.cat([embedded[:, :head], summed], dim=1), self.hidden_dropout, self.training)
        counts = (attention_mask.sum(dim=1) - head).clamp(min=0) // width           # (B,)
        mask = torch.arange(head + items, device=x.device)[None] < (head + counts)[:, None]  # (B, H + N)
        positions = torch.arange(head + items, device=x.device)[None].expand(len(x), -1)
        states = self.body(inputs_embeds=x, attention_mask=mask.long(), position_ids=positions,
                           use_cache=False).last_hidden_state            # no key/value cache: read once
        return states, counts

    def last_states(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """Right-aligned token rows (B, T) -> (B, D): the block output after each row's last whole item (its last head
        token when it has none), as `item_states` gives it, without computing any padding: consecutive rows are
        packed into sequences of at most `PACKED_POSITIONS` positions (a longer row alone), each row attending
        causally within itself (RoPE positions restart per row). Decoding's path: histories of mixed lengths cost
        their real length, and attention over a packed sequence stays small."""
        head, width = self.head_tokens, self.width
        items = (input_ids.shape[1] - head) // width
        embedded = self.body.embed_tokens(input_ids)                                  # (B, T, D)
        summed = embedded[:, head:head + items * width].unflatten(1, (items, width)).sum(dim=2)
        x = torch.cat([embedded[:, :head], summed], dim=1)                            # (B, H + N, D)
        lengths = head + (attention_mask.sum(dim=1) - head).clamp(min=0) // width     # (B,)
        return torch.cat([self.packed_last_states(x[a:b], lengths[a:b]) for a, b in packs(lengths.tolist(),
                                                                                               PACKED_POSITIONS)])

    def packed_last_states(self, x: Tensor, lengths: Tensor) -> Tensor:
        """(B, H + N, D) item vectors and (B,) real lengths -> (B, D): the rows as one sequence of S = sum of their
        lengths, with a block-diagonal causal mask; each row's state at its last position."""
        real = torch.arange(x.shape[1], device=x.device)[None] < lengths[:, None]    # (B, H + N)
        ends = lengths.cumsum(dim=0)                                                  # (B,)
        row = torch.repeat_interleave(torch.arange(len(x), device=x.device), lengths)  # (S,)
        positions = torch.arange(len(row), device=x.device) - (ends - lengths)[row]   # (S,)
        allowed = (row[:, None] == row[None]) & (positions[:, None] >= positions[None])  # (S, S)
        mask = torch.zeros(allowed.shape, dtype=x.dtype, device=x.device).masked_fill_(~allowed,
                                                                                       torch.finfo(x.dtype).min)
        states = self.body(inputs_embeds=x[real][None], attention_mask=mask[None, None], position_ids=positions[None],
                           use_cache=False).last_hidden_state[0]                    # (S, D)
        return states[ends - 1]

    def head_state(self, context: Tensor, level: Tensor | int, chosen: Tensor) -> Tensor:
        """The head's state (..., D) from the state before the item (..., D), the level, and the summed embeddings
        of the item's codes chosen so far (..., D)."""
        z = context + self.level.weight[level] + chosen
        return z + fast_dropout(self.head_mlp(self.head_norm(z)), self.hidden_dropout, self.training)

    def head(self, context: Tensor, level: Tensor | int, chosen: Tensor) -> Tensor:
        """Next-code logits (..., V): `head_state` through the output layer."""
        return self.lm_head(self.out_norm(self.head_state(context, level, chosen)))

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, labels: Tensor | None = None,
                output_hidden_states: bool = False, labelled_only: bool = False, **unused) -> CausalLMOutput:
        """Logits (B, T, V): position p scores token p + 1, as a causal LM's; loss over `labels` (-100 ignored).
        With `output_hidden_states`, `hidden_states` is one (B, T, D): the head's state before the output layer,
        aligned like the logits (0 where nothing is written). With `labelled_only` (right-aligned training rows and
        their labels), only the positions that write a label are scored: logits (K, V) in row-major order and no
        loss (a loss picks its own reduction), so the batch's logits stay the size of its targets."""
        if labelled_only:
            states = self.target_states(input_ids, attention_mask, labels)
            logits, _ = self.written_logits(states, labels)
            return CausalLMOutput(logits=logits, hidden_states=(states,) if output_hidden_states else None)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        length = input_ids.shape[1]
        order = right_alignment(attention_mask)
        forced = input_ids if labels is None else torch.where(labels >= 0, labels, input_ids)  # the codes written
        short = max(self.head_tokens - length, 0)                                    # a prompt cut inside the head
        ids, mask, forced = (F.pad(t.gather(1, order), (0, short)) for t in (input_ids, attention_mask, forced))
        states = self.written_states(ids, mask, forced)[:, :length]                 # (B, T, D)
        if not right_aligned(attention_mask):                                        # back to the input's order
            states = states.gather(1, order.argsort(dim=1)[..., None].expand_as(states))
        logits = self.lm_head(self.out_norm(states))                                 # (B, T, V)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten())  # -100 ignored
        return CausalLMOutput(loss=loss, logits=logits, hidden_states=(states,) if output_hidden_states else None)

    def written_states(self, ids: Tensor, mask: Tensor, forced: Tensor, embedded: Tensor | None = None) -> Tensor:
        """Right-aligned rows (B, T) -> the head's states (B, T', D), T' >= T: position p's state writes token
        p + 1 (levels past the target width and the head tokens get 0). `forced`: the codes chosen before each level."""
        head, width, written = self.head_tokens, self.width, self.target_width
        states, _ = self.item_states(ids, mask, embedded)                            # (B, H + N, D)
        items = states.shape[1] - head
        context = states[:, head - 1:]                                               # (B, N + 1, D): before each item
        codes = F.pad(forced[:, head:], (0, (items + 1) * width - (ids.shape[1] - head)))  # (B, (N + 1) L)
        chosen = self.body.embed_tokens(codes.unflatten(1, (items + 1, width))[..., :written])  # (B, N + 1, L_t, D)
        chosen = F.pad(chosen.cumsum(dim=2)[:, :, :-1], (0, 0, 1, 0))                # codes before each level
        levels = torch.arange(written, device=ids.device)
        z = self.head_state(context[:, :, None], levels, chosen)                     # (B, N + 1, L_t, D)
        z = F.pad(z, (0, 0, 0, width - written)).flatten(1, 2)                       # (B, (N + 1) L, D)
        return torch.cat([z.new_zeros(len(ids), head - 1, z.shape[-1]), z], dim=1)

    def target_states(self, input_ids: Tensor, attention_mask: Tensor, labels: Tensor,
                      embedded: Tensor | None = None) -> Tensor:
        """Right-aligned training rows (B, T) -> the head's states (B, T, D), teacher-forced with the labels' codes
        (`forward`'s hidden states without its logits: a caller scores only the positions that write a label)."""
        forced = torch.where(labels >= 0, labels, input_ids)
        return self.written_states(input_ids, attention_mask, forced, embedded)[:, :input_ids.shape[1]]

    def written_logits(self, states: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """Logits (K, V) at the K positions of `states` (B, T, D) whose next token is a label (row-major order),
        and those labels (K,)."""
        writes = labels[:, 1:] >= 0
        return self.lm_head(self.out_norm(states[:, :-1][writes])), labels[:, 1:][writes]

    def get_input_embeddings(self) -> nn.Embedding:
        """The token embeddings an item's codes are summed from (the Hugging Face models' accessor)."""
        return self.body.embed_tokens

    def input_saliency(self, input_ids: Tensor, attention_mask: Tensor, labels: Tensor) -> Tensor:
        """float32 (B, T): each input token's first-order contribution to the rows' summed loss, |e_t . dLoss/dx_i|
        with x_i the summed embedding of the item holding token t (gradient x input; eval mode, full precision, no
        parameter gradients). Right-aligned rows. Tokens of one item share dLoss/dx_i: the ranking within an item
        follows how far each code's embedding points along it."""
        with eval_mode(self), torch.enable_grad(), torch.autocast(input_ids.device.type, enabled=False):
            embedded = self.body.embed_tokens(input_ids).detach().requires_grad_(True)
            logits, targets = self.written_logits(self.target_states(input_ids, attention_mask, labels, embedded),
                                                  labels)
            (grad,) = torch.autograd.grad(F.cross_entropy(logits.float(), targets, reduction="sum"), embedded)
        return (grad * embedded).sum(dim=-1).abs().detach() * attention_mask

    def beam_step(self, input_ids: Tensor, attention_mask: Tensor) -> ItemStep:
        return ItemStep(self, input_ids, attention_mask)


PACKED_POSITIONS = 512          # positions per packed sequence: its attention costs the square of its length


def packs(lengths: list[int], limit: int) -> list[tuple[int, int]]:
    """Consecutive row ranges [a, b) whose lengths sum to at most `limit` (a longer row is a range of its own)."""
    out, start, total = [], 0, 0
    for index, length in enumerate(lengths):
        if index > start and total + length > limit:
            out.append((start, index))
            start, total = index, 0
        total += length
    return [*out, (start, len(lengths))] if lengths else out


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
        self.model, self.level = model, 0
        self.context = model.last_states(ids, mask)                                 # (B, D)
        self.chosen = torch.zeros_like(self.context)                                # (R, D)

    def __call__(self, tokens: Tensor) -> Tensor:
        if self.level:
            self.chosen = self.chosen + self.model.body.embed_tokens(tokens)
        logits = self.model.head(self.context, self.level, self.chosen)           # (R, V)
        self.level += 1
        return logits

    def reorder(self, origin: Tensor, beams: int) -> None:
        self.context, self.chosen = self.context[origin], self.chosen[origin]


def build_item_causal(cfg: ModelConfig, vocab: Vocabulary, seed: int, item_width: int, task_tokens: int,
                      target_width: int) -> ItemCausalLM:
    return ItemCausalLM(cfg, vocab, seed, item_width, task_tokens, target_width)
