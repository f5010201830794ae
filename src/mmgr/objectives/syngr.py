"""SynGR's training objective (arXiv 2605.18920), registered as `training.objective: syngr`.

Examples are the bimodal layout's: every prefix of every training sequence, once per task (`<task:next:text>` ->
the next item's text SID, `<task:next:image>` -> its image SID). Inside each training step, from the current
model:

1. saliency: token importance of the original history (`models/saliency.py`), its dominant modality;
2. three views sharing the target: original, masked (the dominant modality's top-r tokens dropped: padding outside
   the attention mask, as in the authors' code; `masked_tokens=mask-token` writes an attended `<mask>` instead),
   unimodal (only the task's own modality's code tokens, plus the prompt and specials);
3. loss = mean(CE(original), CE(masked), CE(unimodal)) + alpha * L_syn (the authors' code averages the views'
   cross-entropies; `view_loss=sum` adds them, as the paper's formula is printed), with L_syn the 2-way InfoNCE
   -log softmax([cos(z_mask, z_ori), cos(z_mask, z_uni)] / tau)[0] on z = the mean of the decoder's last hidden
   states over the target tokens. Each CE is the mean over the view's target tokens. Each view is a forward pass
   of its own, at its own width (the unimodal view is about half as long as the others).

Ablations (`training.syngr`): masking=random (w/o SM), unimodal_view=false (w/o UN: no CE on the unimodal view,
which stays the synergy loss's negative; the mean is then over two views), synergy_weight=0 (w/o SCL). The random
parts (w/o SM) draw from torch's global generator, like dropout.

On the item-level causal backbone (`model.kind=item-causal`, `ItemLevelSynGRLoss`) the same steps run on one
window per training sequence and task, with a target at every item; an item there is the sum of its code
embeddings, so saliency is gradient x input per token and a hidden token is a zero (<pad>) inside its item.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from mmgr.config import SynGRConfig
from mmgr.errors import MmgrError
from mmgr.layouts.base import token_modalities
from mmgr.layouts.bimodal import BimodalLayout, next_sid_task
from mmgr.models.saliency import dominant_modality, random_mask, token_importance, top_r_mask
from mmgr.objectives.base import OBJECTIVES, Batching
from mmgr.objectives.next_item import next_item_examples
from mmgr.tokenizers.codes import Vocabulary
from mmgr.training.data import IGNORE, EncodedExamples, causal_windows
from mmgr.training.loop import TrainData, bucketed_train_data

if TYPE_CHECKING:
    from mmgr.inference.prepared import Prepared


class SynGRObjective:
    min_modalities = 2
    backbones = ("t5", "item-causal")
    settings = "syngr"

    def text_fields(self, settings: SynGRConfig) -> tuple[str, ...]:
        return ()

    def tasks(self, modalities: list[str]) -> tuple[str, ...]:
        return ()                                   # the bimodal layout declares the two next-SID tasks

    def train_data(self, prep: Prepared, batching: Batching, settings: SynGRConfig) -> tuple[TrainData, int]:
        vocab = prep.layout.vocab
        if type(prep.layout) is not BimodalLayout or len(vocab.levels) != 2:            # not a unimodal layout
            raise MmgrError(f"the syngr objective trains a next-SID task per modality of two; set model.layout="
                            f"bimodal and two model.modalities (got layout targets {', '.join(prep.layout.targets)})")
        if batching.decoder_only:
            examples, loss = item_level_examples(prep, batching.max_history), ItemLevelSynGRLoss.for_vocabulary
        else:
            examples, loss = next_item_examples(prep, batching), SynGRLoss.for_vocabulary
        data = bucketed_train_data(examples, batching.batch_size, batching.seed)
        return TrainData(data.batches, data.collate, loss(vocab, settings)), len(examples)


@dataclass
class SynGRLoss:
    token_kinds: Tensor       # (V,) modality index of every token id (-1: specials, prompts, users)
    task_kinds: Tensor        # (V,) for a next-SID task token, the modality it asks for (-1 otherwise)
    mask_token: int
    pad_token: int
    modalities: int
    cfg: SynGRConfig

    @classmethod
    def for_vocabulary(cls, vocab: Vocabulary, cfg: SynGRConfig) -> SynGRLoss:
        tasks = np.full(vocab.size, -1, dtype=np.int64)
        for index, modality in enumerate(vocab.levels):
            tasks[vocab.task_token(next_sid_task(modality))] = index
        return cls(torch.from_numpy(token_modalities(vocab, np.arange(vocab.size))), torch.from_numpy(tasks),
                   vocab.token("<mask>"), vocab.token("<pad>"), len(vocab.levels), cfg)

    def __call__(self, model: nn.Module, batch: dict[str, Tensor]) -> Tensor:
        return self.parts(model, batch)["loss"]

    def parts(self, model: nn.Module, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """The loss and its terms (ce_original, ce_masked, ce_unimodal, synergy) for one batch."""
        ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
        kinds = self.token_kinds.to(ids.device)[ids].masked_fill(mask == 0, -1)      # (B, T)
        task = self.task_kinds.to(ids.device)[ids[:, 0]]                               # (B,) the asked modality
        if (task < 0).any():
            raise MmgrError("syngr: every input must start with a next-SID task prompt (bimodal layout)")
        synergy = self.cfg.synergy_weight > 0
        views = [(ids, mask), self.masked(model, ids, mask, kinds)]
        if self.cfg.unimodal_view or synergy:
            views.append(unimodal_view(ids, mask, kinds, task))
        start = model.prepare_decoder_input_ids_from_labels(labels=labels)            # teacher forcing, no HF loss
        outs = [model(input_ids=view_ids, attention_mask=view_mask, decoder_input_ids=start,
                      output_hidden_states=synergy) for view_ids, view_mask in views]  # each view at its own width
        ce = [F.cross_entropy(out.logits.float().transpose(1, 2), labels, ignore_index=IGNORE) for out in outs]
        z = [target_mean(out.decoder_hidden_states[-1], labels) for out in outs] if synergy else None  # 3 x (B, D)
        return combined(ce, z, self.cfg)

    def masked(self, model: nn.Module, ids: Tensor, mask: Tensor, kinds: Tensor) -> tuple[Tensor, Tensor]:
        """The masked view (ids, mask): saliency (or random) top-r tokens of the dominant modality dropped (padding,
        mask 0) or, with `masked_tokens=mask-token`, turned into an attended <mask>."""
        if self.cfg.masking == "saliency":
            importance = token_importance(model, ids, mask)
            hidden = top_r_mask(importance, kinds, dominant_modality(importance, kinds, self.modalities),
                                self.cfg.mask_ratio)
        else:
            hidden = random_mask(kinds, self.modalities, self.cfg.mask_ratio)
        if self.cfg.masked_tokens == "drop":
            return ids.masked_fill(hidden, self.pad_token), mask.masked_fill(hidden, 0)
        return ids.masked_fill(hidden, self.mask_token), mask


def item_level_examples(prep: Prepared, max_history: int) -> EncodedExamples:
    """The item-level causal backbone's examples: one per training window and next-SID task,
    `<bos> <task:next:m> [user] t(i_1) v(i_1) ... t(i_n) v(i_n)`, labels m(i_k) in the first L_m slots of every
    item after the window's first (-100 elsewhere): the head writes item k's SID in modality m from the bimodal
    history before it."""
    layout = prep.layout
    return item_windows(prep, max_history, [(layout.vocab.task_token(next_sid_task(modality)), layout.item_tokens,
                                             targets) for modality, targets in layout.targets.items()])


def item_windows(prep: Prepared, max_history: int,
                 tasks: list[tuple[int, np.ndarray, np.ndarray]]) -> EncodedExamples:
    """One example per training window and task (its prompt token, every item as its history writes it (N, W),
    every item's target (N, L_t)): `<bos> <task> [user] items[i_1] ... items[i_n]`, labels targets[i_k] in the first
    L_t slots of every item after the window's first (-100 elsewhere)."""
    layout = prep.layout
    vocab, width, bos = layout.vocab, layout.history_width, layout.vocab.token("<bos>")
    windows = list(causal_windows(prep.split.train, max_history))
    inputs, labels = [], []
    for task, items, targets in tasks:
        for user, window in windows:
            head = [bos, task, *([vocab.user_token(prep.user_ids[user])] if layout.user_token else [])]
            inputs.append(np.concatenate([head, items[window].reshape(-1)]).astype(np.int64))
            written = np.full((len(window) - 1, width), IGNORE, dtype=np.int64)          # (n - 1, W)
            written[:, :targets.shape[1]] = targets[window[1:]]
            labels.append(np.concatenate([np.full(len(head) + width, IGNORE), written.reshape(-1)]))
    ends = np.asarray([window[-1] for _, window in windows], dtype=np.int64)
    users = np.asarray([user for user, _ in windows], dtype=np.int64)
    return EncodedExamples(inputs, labels, np.tile(ends, len(tasks)), np.tile(users, len(tasks)))


@dataclass
class ItemLevelSynGRLoss:
    """Steps 1-3 on the item-level causal backbone, where an item enters as the sum of its code embeddings: a
    dropped token is a <pad> (whose embedding is 0) inside its item (an attended <mask> adds the <mask> embedding
    instead), and so is a token outside the unimodal view; every view keeps the rows' shape and the
    three run as one forward over the stacked views (as the authors' code does). Saliency is gradient x input per
    token (`ItemCausalLM.input_saliency`): attention there is between whole items and cannot rank one item's text
    codes against its image codes. z is the mean of the head's states over the target positions."""

    token_kinds: Tensor       # (V,) modality index of every token id (-1: specials, prompts, users)
    task_kinds: Tensor        # (V,) for a next-SID task token, the modality it asks for (-1 otherwise)
    hidden_token: int         # what a masked token becomes: <pad> (dropped), or <mask> (masked_tokens=mask-token)
    pad_token: int
    modalities: int
    cfg: SynGRConfig

    @classmethod
    def for_vocabulary(cls, vocab: Vocabulary, cfg: SynGRConfig) -> ItemLevelSynGRLoss:
        base = SynGRLoss.for_vocabulary(vocab, cfg)
        hidden = base.pad_token if cfg.masked_tokens == "drop" else base.mask_token
        return cls(base.token_kinds, base.task_kinds, hidden, base.pad_token, base.modalities, cfg)

    def __call__(self, model: nn.Module, batch: dict[str, Tensor]) -> Tensor:
        return self.parts(model, batch)["loss"]

    def parts(self, model: nn.Module, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """The loss and its terms (ce_original, ce_masked, ce_unimodal, synergy) for one batch."""
        ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]   # (B, T), right-padded
        hidden, other = self.hidden_and_other(model, ids, mask, labels)
        synergy = self.cfg.synergy_weight > 0
        views = [ids, ids.masked_fill(hidden, self.hidden_token)]
        if self.cfg.unimodal_view or synergy:
            views.append(ids.masked_fill(other, self.pad_token))
        n = len(views)
        stacked = labels.repeat(n, 1)
        out = model(input_ids=torch.cat(views), attention_mask=mask.repeat(n, 1), labels=stacked, labelled_only=True,
                    output_hidden_states=synergy)                                  # through forward: the precision
        states, targets = out.hidden_states[0] if synergy else None, stacked[:, 1:][stacked[:, 1:] >= 0]
        ce = [F.cross_entropy(view.float(), target) for view, target in
              zip(out.logits.chunk(n), targets.chunk(n), strict=True)]            # (K, V) per view
        z = list(target_mean(states[:, :-1], labels[:, 1:].repeat(n, 1)).chunk(n)) if synergy else None  # n x (B, D)
        return combined(ce, z, self.cfg)

    def hidden_and_other(self, model: nn.Module, ids: Tensor, mask: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """Steps 1-2 for right-padded rows (B, T) that each ask for a next SID: the tokens the masked view hides (the
        dominant modality's top-r by saliency, or random ones) and those outside the unimodal view."""
        kinds = self.token_kinds.to(ids.device)[ids].masked_fill(mask == 0, -1)      # (B, T)
        task = self.task_kinds.to(ids.device)[ids[:, 1]]                               # (B,) after <bos>
        if (task < 0).any():
            raise MmgrError("syngr: every input must start with <bos> and a next-SID task prompt (bimodal layout)")
        if self.cfg.masking == "saliency":
            importance = model.input_saliency(ids, mask, labels)
            hidden = top_r_mask(importance, kinds, dominant_modality(importance, kinds, self.modalities),
                                self.cfg.mask_ratio)
        else:
            hidden = random_mask(kinds, self.modalities, self.cfg.mask_ratio)
        return hidden, (kinds >= 0) & (kinds != task[:, None])


def combined(ce: list[Tensor], z: list[Tensor] | None, cfg: SynGRConfig) -> dict[str, Tensor]:
    """Step 3 from the views' cross-entropies (original, masked[, unimodal]) and, with the synergy term, their z:
    the loss and its terms."""
    parts = {"ce_original": ce[0], "ce_masked": ce[1]}
    if cfg.unimodal_view:
        parts["ce_unimodal"] = ce[2]
    trained = torch.stack(list(parts.values()))
    loss = trained.mean() if cfg.view_loss == "mean" else trained.sum()
    if z is not None:
        parts["synergy"] = synergy_loss(z[0], z[1], z[2], cfg.temperature)
        loss = loss + cfg.synergy_weight * parts["synergy"]
    return {**parts, "loss": loss}


def unimodal_view(ids: Tensor, mask: Tensor, kinds: Tensor, keep_modality: Tensor) -> tuple[Tensor, Tensor]:
    """(ids, mask) with only row b's `keep_modality[b]` code tokens and its non-code tokens (prompt, user, <eos>),
    in their order, left-aligned and padded to the longest kept row."""
    keep = mask.bool() & ((kinds == keep_modality[:, None]) | (kinds == -1))
    order = (~keep).to(torch.int8).argsort(dim=1, stable=True)                        # kept positions first
    width = int(keep.sum(dim=1).max())
    kept_ids = ids.gather(1, order)[:, :width]
    kept_mask = keep.gather(1, order)[:, :width]
    return kept_ids.masked_fill(~kept_mask, 0), kept_mask.to(mask.dtype)


def target_mean(states: Tensor, labels: Tensor) -> Tensor:
    """(N, D): mean of decoder states over each row's target (non-padding label) positions."""
    weights = labels.ne(IGNORE).to(states.dtype)[..., None]
    return (states * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)


def synergy_loss(z_original: Tensor, z_masked: Tensor, z_unimodal: Tensor, temperature: float) -> Tensor:
    """Mean over the batch of -log softmax([cos(z_mask, z_ori), cos(z_mask, z_uni)] / tau)[0]."""
    logits = torch.stack([F.cosine_similarity(z_masked.float(), z_original.float(), dim=-1),
                          F.cosine_similarity(z_masked.float(), z_unimodal.float(), dim=-1)], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.int64, device=logits.device))


OBJECTIVES.register("syngr")(SynGRObjective())
