"""MGR-LF++ alignment objectives (`training.alignment.objective`, a stage before next-item; T5 only):

- `translate`: `<task:text->image> text SID <eos>` -> the item's image SID, and back, for every item that has both
  modalities.
- `infonce`: the mean-pooled encoder states of an item's text-SID and image-SID sequences are positives, the other
  items of the batch negatives (symmetric InfoNCE).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.nn import functional as F

from mmgr.errors import MmgrError
from mmgr.layouts.base import pad_batch, prompt
from mmgr.objectives.base import ALIGNMENTS, Batching, SidsOnly
from mmgr.training.data import EncodedExamples, epoch_order
from mmgr.training.loop import TrainData, bucketed_train_data

if TYPE_CHECKING:
    from mmgr.config import AlignmentConfig
    from mmgr.inference.prepared import Prepared


class Translate(SidsOnly):
    backbones = ("t5",)

    def tasks(self, modalities: list[str]) -> tuple[str, ...]:
        return tuple(f"{a}->{b}" for a in modalities for b in modalities if a != b)

    def train_data(self, prep: Prepared, batching: Batching, settings: None) -> tuple[TrainData, int]:
        items = items_with_every_modality(prep)
        tokens, vocab = prep.layout.modality_tokens, prep.layout.vocab
        inputs, labels, targets = [], [], []
        for task in self.tasks(list(vocab.levels)):
            source, target = task.split("->")
            inputs += [prompt(vocab, task, tokens[source][i]) for i in items.tolist()]
            labels += list(tokens[target][items])
            targets.append(items)
        examples = EncodedExamples(inputs, labels, np.concatenate(targets), np.zeros(len(inputs), dtype=np.int64))
        return bucketed_train_data(examples, batching.batch_size, batching.seed), len(examples)


class InfoNCE(SidsOnly):
    backbones = ("t5",)         # pools encoder states
    settings = "alignment"

    def tasks(self, modalities: list[str]) -> tuple[str, ...]:
        return ()

    def train_data(self, prep: Prepared, batching: Batching, settings: AlignmentConfig) -> tuple[TrainData, int]:
        vocab = prep.layout.vocab
        if len(vocab.levels) != 2:
            raise MmgrError(f"infonce alignment pairs two modalities' SIDs, got {', '.join(vocab.levels)}")
        items = items_with_every_modality(prep)
        eos = vocab.token("<eos>")
        first, second = (np.concatenate([t, np.full((len(t), 1), eos)], axis=1)
                         for t in prep.layout.modality_tokens.values())
        batch_size, seed, temperature = batching.batch_size, batching.seed, settings.temperature

        def batches(epoch: int) -> list[np.ndarray]:          # in-batch negatives: a new mix of items each epoch
            order = items[epoch_order(len(items), seed, epoch)]
            return [order[start:start + batch_size] for start in range(0, len(order) - 1, batch_size)
                    if len(order[start:start + batch_size]) > 1]

        def collate(index: np.ndarray) -> dict[str, torch.Tensor]:
            input_ids, mask = pad_batch([*first[index], *second[index]])        # (2B, T): first B, then second B
            return {"input_ids": input_ids, "attention_mask": mask, "labels": torch.from_numpy(index + 1)}

        def loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
            return infonce_loss(model, batch["input_ids"], batch["attention_mask"], temperature)

        return TrainData(batches, collate, loss), len(items)


def infonce_loss(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE between the mean-pooled encoder states of rows [:B] and rows [B:] (row i pairs i + B).

    The forward goes through the model itself (one decoder token), so precision and data-parallel wrappers apply."""
    start = torch.full((len(input_ids), 1), model.config.decoder_start_token_id, device=input_ids.device)
    states = model(input_ids=input_ids, attention_mask=attention_mask,
                   decoder_input_ids=start).encoder_last_hidden_state      # (2B, T, D)
    weights = attention_mask[..., None].to(states.dtype)
    pooled = F.normalize(((states * weights).sum(1) / weights.sum(1)).float(), dim=-1)  # (2B, D)
    a, b = pooled.chunk(2)
    logits = a @ b.T / temperature                                         # (B, B)
    target = torch.arange(len(a), device=logits.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def items_with_every_modality(prep: Prepared) -> np.ndarray:
    """Item indices that have every modality of the vocabulary (alignment needs both sides)."""
    present = np.ones(len(prep.layout.item_tokens), dtype=bool)
    for modality in prep.layout.vocab.levels:
        present &= ~prep.codes[modality].missing
    if present.sum() < 2:
        raise MmgrError(f"alignment needs items with every modality ({', '.join(prep.layout.vocab.levels)}); "
                        f"only {int(present.sum())} have them")
    return np.flatnonzero(present)


ALIGNMENTS.register("translate")(Translate())
ALIGNMENTS.register("infonce")(InfoNCE())
