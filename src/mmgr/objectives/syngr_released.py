"""SynGR as its authors release it (arXiv 2605.18920; their fine-tuning script, `script/finetune.sh` of the public
code), registered as `training.objective: syngr-released` on the `unimodal-wide` layout and the item-level causal
backbone.

The paper describes SynGR's two tasks on bimodal histories (`training.objective: syngr`, `objectives/syngr.py`).
The released script trains six: MQL4GRec's four sequence tasks (the next text or image SID from a text or an image
history: `seqrec`, `seqimage`, `seqitem2image`, `seqimage2item`) and SynGR's two (`masktext`, `maskimg`: the next
text or image SID from the bimodal history, in three views with the synergy loss); it decodes each modality's SID
from that modality's history and fuses the two lists. Here:

1. examples: one window per training sequence and task, as the item-level backbone cuts them
   (`objectives/syngr.py` `item_windows`): the four sequence tasks on one-modality histories (`<task:seq:a->b>`;
   `unimodal-wide` writes the other modality's slots as `<pad>`, so an item reads as its modality-a codes) and
   SynGR's two on bimodal histories (`<task:next:m>`);
2. each step, the batch's SynGR rows get SynGR's masked and unimodal views (saliency from the current model:
   `ItemLevelSynGRLoss.hidden_and_other`, steps 1-2 of `objectives/syngr.py`); the sequence rows are read once;
3. loss = the mean cross-entropy over the original rows' target tokens, where a SynGR row's token counts the mean
   of its views' cross-entropies (`view_loss=sum`: their sum), + alpha * L_syn over the SynGR rows. This is the
   authors' token mean over stacked views where a sequence row's three views are the same input.

Not copied: the authors' code gives every row of a batch that holds a SynGR row three views (a sequence row's
unimodal view is then empty and its masked view masked at fixed strides). Validation is the mean held-out SID
cross-entropy of both decoding targets, as for every fused recipe (the authors validate on the text task alone).
Switches: `training.syngr`'s (masking=random, unimodal_view=false, synergy_weight=0, ...).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from mmgr.config import SynGRConfig
from mmgr.errors import MmgrError
from mmgr.layouts.bimodal import next_sid_task
from mmgr.layouts.unimodal import WideUnimodalLayout, sequence_task
from mmgr.objectives.base import OBJECTIVES, Batching
from mmgr.objectives.syngr import ItemLevelSynGRLoss, item_windows, synergy_loss, target_mean
from mmgr.training.data import EncodedExamples
from mmgr.training.loop import TrainData, bucketed_train_data

if TYPE_CHECKING:
    from mmgr.inference.prepared import Prepared


class ReleasedSynGRObjective:
    min_modalities = 2
    backbones = ("item-causal",)
    settings = "syngr"

    def text_fields(self, settings: SynGRConfig) -> tuple[str, ...]:
        return ()

    def tasks(self, modalities: list[str]) -> tuple[str, ...]:
        """The cross-modal sequence prompts and SynGR's next-SID prompts (the layout declares `seq:m->m`)."""
        return (*(sequence_task(a, b) for a in modalities for b in modalities if a != b),
                *map(next_sid_task, modalities))

    def train_data(self, prep: Prepared, batching: Batching, settings: SynGRConfig) -> tuple[TrainData, int]:
        layout = prep.layout
        if not isinstance(layout, WideUnimodalLayout) or len(layout.vocab.levels) != 2:
            raise MmgrError("the syngr-released objective trains on two modalities' SIDs with "
                            "model.layout=unimodal-wide")
        examples = released_examples(prep, batching.max_history)
        data = bucketed_train_data(examples, batching.batch_size, batching.seed)
        loss = ReleasedSynGRLoss.for_vocabulary(layout.vocab, settings)
        return TrainData(data.batches, data.collate, loss), len(examples)


def released_examples(prep: Prepared, max_history: int) -> EncodedExamples:
    """Step 1: the four sequence tasks' windows, then SynGR's two."""
    layout = prep.layout
    vocab, modalities = layout.vocab, list(layout.vocab.levels)
    histories = {m: layout.written_in(m, layout.item_tokens) for m in modalities}   # (N, W) per history modality
    sequences = [(vocab.task_token(sequence_task(a, b)), histories[a], layout.targets[b])
                 for a in modalities for b in modalities]
    synergy = [(vocab.task_token(next_sid_task(m)), layout.item_tokens, layout.targets[m]) for m in modalities]
    return item_windows(prep, max_history, sequences + synergy)


class ReleasedSynGRLoss(ItemLevelSynGRLoss):
    """Steps 2-3 on a batch of sequence rows and SynGR rows (those whose prompt asks for a next SID)."""

    def parts(self, model: nn.Module, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """The loss and its terms (ce_original over every row; ce_masked, ce_unimodal and synergy over the SynGR
        rows, where the batch has any)."""
        ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]   # (B, T), right-padded
        rows = torch.nonzero(self.task_kinds.to(ids.device)[ids[:, 1]] >= 0).squeeze(1)  # (S,) SynGR rows
        blocks = [(ids, mask, labels)]
        if len(rows):
            sub = ids[rows], mask[rows], labels[rows]
            hidden, other = self.hidden_and_other(model, *sub)
            blocks.append((sub[0].masked_fill(hidden, self.hidden_token), sub[1], sub[2]))
            if self.cfg.unimodal_view or self.cfg.synergy_weight > 0:
                blocks.append((sub[0].masked_fill(other, self.pad_token), sub[1], sub[2]))
        synergy = len(blocks) == 3 and self.cfg.synergy_weight > 0
        stacked_ids, stacked_mask, stacked_labels = (torch.cat(parts) for parts in zip(*blocks, strict=True))
        out = model(input_ids=stacked_ids, attention_mask=stacked_mask, labels=stacked_labels, labelled_only=True,
                    output_hidden_states=synergy)                                  # through forward: the precision
        written = stacked_labels[:, 1:] >= 0                                         # (B + S * views, T - 1)
        token_ce = F.cross_entropy(out.logits.float(), stacked_labels[:, 1:][written], reduction="none")  # (K,)
        view, weight = self.views_and_weights(len(ids), rows, len(blocks) - 1)        # per stacked row
        view, weight = (x.to(ids.device)[torch.nonzero(written)[:, 0]] for x in (view, weight))   # per token (K,)
        parts = {"ce_original": token_ce[view == 0].mean()}
        if len(rows):
            parts["ce_masked"] = token_ce[view == 1].mean()
            if self.cfg.unimodal_view:
                parts["ce_unimodal"] = token_ce[view == 2].mean()
        loss = (weight * token_ce).sum() / (view == 0).sum()
        if synergy:
            states, targets = out.hidden_states[0][:, :-1], stacked_labels[:, 1:]
            copies = torch.arange(len(ids), len(stacked_ids), device=ids.device).chunk(2)   # masked, unimodal rows
            z = [target_mean(states[index], targets[index]) for index in (rows, *copies)]
            parts["synergy"] = synergy_loss(z[0], z[1], z[2], self.cfg.temperature)
            loss = loss + self.cfg.synergy_weight * parts["synergy"]
        return {**parts, "loss": loss}

    def views_and_weights(self, batch: int, rows: Tensor, copies: int) -> tuple[Tensor, Tensor]:
        """For the stacked rows (the B originals, then the S SynGR rows' `copies` views: masked[, unimodal]), each
        one's view (0 original, 1 masked, 2 unimodal) and the weight of its target tokens' cross-entropy: 1 for a
        sequence row; a SynGR row's trained views share it (their mean; `view_loss=sum`: 1 each); an untrained
        unimodal view (w/o UN: only the synergy loss's negative) 0."""
        share = 1.0 if self.cfg.view_loss == "sum" else 1.0 / (2 + self.cfg.unimodal_view)
        view = torch.cat([torch.zeros(batch, dtype=torch.int64),
                          torch.arange(1, copies + 1).repeat_interleave(len(rows))])
        weight = torch.ones(len(view))
        weight[rows.cpu()] = share
        weight[batch:] = share
        weight[view == 2] = share if self.cfg.unimodal_view else 0.0
        return view, weight


OBJECTIVES.register("syngr-released")(ReleasedSynGRObjective())
