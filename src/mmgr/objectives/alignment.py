"""MGR-LF++ alignment objectives (`training.alignment.objective`, a stage before next-item):

- `translate`: `<task:text->image> text SID <eos>` -> the item's image SID, and back, for every item that has both
  modalities (T5). On the item-level causal backbone, whose inputs all share one head (no task token), an item is
  translated as a one-item history: `<bos> a(i) i`, the history item holding only modality a's codes (the other
  slots `<pad>`, embedding 0, so the item's vector is its a-SID alone) and the next item the whole of i, labelled on
  its modality-b codes (its other codes are teacher-forced, unlabelled). Late fusion only: its items hold every
  modality, and a text-only or image-only item tells the two directions apart.
- `infonce`: the mean-pooled encoder states of an item's text-SID and image-SID sequences are positives, the other
  items of the batch negatives (symmetric InfoNCE).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.nn import functional as F

from mmgr.errors import MmgrError
from mmgr.layouts.base import pad_batch, prompt, token_modalities
from mmgr.objectives.base import ALIGNMENTS, Batching, SidsOnly
from mmgr.training.data import IGNORE, EncodedExamples, epoch_order
from mmgr.training.loop import TrainData, bucketed_train_data

if TYPE_CHECKING:
    from mmgr.config import AlignmentConfig
    from mmgr.inference.prepared import Prepared


class Translate(SidsOnly):
    backbones = ("t5", "item-causal")

    def tasks(self, modalities: list[str]) -> tuple[str, ...]:
        return tuple(f"{a}->{b}" for a in modalities for b in modalities if a != b)

    def train_data(self, prep: Prepared, batching: Batching, settings: None) -> tuple[TrainData, int]:
        build = item_level_translations if batching.decoder_only else translations
        examples = build(prep, self.tasks(list(prep.layout.vocab.levels)))
        return bucketed_train_data(examples, batching.batch_size, batching.seed), len(examples)


def translations(prep: Prepared, tasks: tuple[str, ...]) -> EncodedExamples:
    """`<task:a->b> a(i) <eos>` -> b(i) for every task and every item with every modality (encoder-decoder)."""
    items = items_with_every_modality(prep)
    tokens, vocab = prep.layout.modality_tokens, prep.layout.vocab
    inputs, labels, targets = [], [], []
    for task in tasks:
        source, target = task.split("->")
        inputs += [prompt(vocab, task, tokens[source][i]) for i in items.tolist()]
        labels += list(tokens[target][items])
        targets.append(items)
    return EncodedExamples(inputs, labels, np.concatenate(targets), np.zeros(len(inputs), dtype=np.int64))


def item_level_translations(prep: Prepared, tasks: tuple[str, ...]) -> EncodedExamples:
    """`<bos> a(i) i` with labels on i's modality-b codes, for every task a->b and every item with every modality
    (the item-level causal backbone; module docstring)."""
    layout, items = prep.layout, items_with_every_modality(prep)
    vocab, item_tokens = layout.vocab, layout.item_tokens[items]                 # (I, W)
    columns = token_modalities(vocab, item_tokens)                               # (I, W) modality index, -1 others
    names = list(vocab.levels)
    if layout.prompted or layout.user_token or not all((columns == m).any(axis=1).all() for m in range(len(names))):
        raise MmgrError("translate on model.kind=item-causal translates within late-fusion items (every item "
                        "holds every modality) without a task prompt or user token: use model.layout=late-fusion "
                        "and model.user_buckets=0")
    bos, pad = vocab.token("<bos>"), vocab.token("<pad>")
    inputs, labels, targets = [], [], []
    for task in tasks:
        source, target = (names.index(m) for m in task.split("->"))
        history = np.where(columns == source, item_tokens, pad)                  # (I, W) a(i): the rest hidden
        head = np.full((len(items), 1), bos)
        inputs += list(np.concatenate([head, history, item_tokens], axis=1))
        written = np.where(columns == target, item_tokens, IGNORE)               # (I, W) b(i)'s codes labelled
        labels += list(np.concatenate([np.full((len(items), 1 + item_tokens.shape[1]), IGNORE), written], axis=1))
        targets.append(items)
    return EncodedExamples(inputs, labels, np.concatenate(targets), np.zeros(len(inputs), dtype=np.int64))


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
