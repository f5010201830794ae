"""MGR-LF++ alignment objectives (`training.alignment.objective`, a stage before next-item):

- `translate`: `<task:text->image> text SID <eos>` -> the item's image SID, and back, for every item that has both
  modalities (T5). On the item-level causal backbone, whose inputs all share one head (no task token), an item is
  translated as a one-item history: `<bos> a(i) i`, the history item holding only modality a's codes (the other
  slots `<pad>`, embedding 0, so the item's vector is its a-SID alone) and the next item the whole of i, labelled on
  its modality-b codes (its other codes are teacher-forced, unlabelled). Late fusion only: its items hold every
  modality, and a text-only or image-only item tells the two directions apart.
- `infonce`: the mean-pooled encoder states of an item's text-SID and image-SID sequences are positives, the other
  items of the batch negatives (symmetric InfoNCE). On the item-level causal backbone each side is the same one-item
  history as `translate`'s (`<bos> a(i)`, the other modality's slots `<pad>`), and its state is the head's state that
  writes the next item's first code (a function of the item's block output alone): the item read through its text
  SID and through its image SID should lead the model to the same place.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.nn import functional as F

from mmgr.errors import MmgrError
from mmgr.layouts.base import pad_batch, prompt, token_modalities, translation_task
from mmgr.objectives.base import ALIGNMENTS, Batching, SidsOnly
from mmgr.training.data import IGNORE, EncodedExamples, epoch_order
from mmgr.training.loop import TrainData, bucketed_train_data

if TYPE_CHECKING:
    from mmgr.config import AlignmentConfig
    from mmgr.inference.prepared import Prepared


class Translate(SidsOnly):
    backbones = ("t5", "item-causal")

    def tasks(self, modalities: list[str]) -> tuple[str, ...]:
        return tuple(translation_task(a, b) for a in modalities for b in modalities if a != b)

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
    items = items_with_every_modality(prep)
    views = one_modality_items(prep, items)                                      # modality -> (I, W)
    item_tokens, vocab = prep.layout.item_tokens[items], prep.layout.vocab
    head = np.full((len(items), 1), vocab.token("<bos>"))
    inputs, labels, targets = [], [], []
    for task in tasks:
        source, target = task.split("->")
        inputs += list(np.concatenate([head, views[source], item_tokens], axis=1))
        written = np.where(views[target] != vocab.token("<pad>"), item_tokens, IGNORE)   # (I, W) b(i)'s codes
        labels += list(np.concatenate([np.full((len(items), 1 + item_tokens.shape[1]), IGNORE), written], axis=1))
        targets.append(items)
    return EncodedExamples(inputs, labels, np.concatenate(targets), np.zeros(len(inputs), dtype=np.int64))


def one_modality_items(prep: Prepared, items: np.ndarray) -> dict[str, np.ndarray]:
    """modality -> (I, W): each item's late-fusion tokens with only that modality's codes, the rest `<pad>`
    (embedding 0, so the item's summed vector is that modality's SID alone). Item-level causal backbone only."""
    layout = prep.layout
    vocab, item_tokens = layout.vocab, layout.item_tokens[items]                 # (I, W)
    columns = token_modalities(vocab, item_tokens)                               # (I, W) modality index, -1 others
    names = list(vocab.levels)
    if layout.prompted or layout.user_token or not all((columns == m).any(axis=1).all() for m in range(len(names))):
        raise MmgrError("alignment on model.kind=item-causal reads late-fusion items (every item holds every "
                        "modality) without a task prompt or user token: use model.layout=late-fusion and "
                        "model.user_buckets=0")
    pad = vocab.token("<pad>")
    return {name: np.where(columns == index, item_tokens, pad) for index, name in enumerate(names)}


class InfoNCE(SidsOnly):
    backbones = ("t5", "item-causal")
    settings = "alignment"

    def tasks(self, modalities: list[str]) -> tuple[str, ...]:
        return ()

    def train_data(self, prep: Prepared, batching: Batching, settings: AlignmentConfig) -> tuple[TrainData, int]:
        vocab = prep.layout.vocab
        if len(vocab.levels) != 2:
            raise MmgrError(f"infonce alignment pairs two modalities' SIDs, got {', '.join(vocab.levels)}")
        items = items_with_every_modality(prep)
        if batching.decoder_only:                              # (N, 1 + W) each: <bos> a(i)
            bos = np.full((len(prep.layout.item_tokens), 1), vocab.token("<bos>"))
            views = one_modality_items(prep, np.arange(len(prep.layout.item_tokens)))
            first, second = (np.concatenate([bos, view], axis=1) for view in views.values())
            states = next_item_states
        else:                                                  # (N, L_m + 1) each: m(i) <eos>
            eos = vocab.token("<eos>")
            first, second = (np.concatenate([t, np.full((len(t), 1), eos)], axis=1)
                             for t in prep.layout.modality_tokens.values())
            states = pooled_encoder_states
        batch_size, seed, temperature = batching.batch_size, batching.seed, settings.temperature

        def batches(epoch: int) -> list[np.ndarray]:          # in-batch negatives: a new mix of items each epoch
            order = items[epoch_order(len(items), seed, epoch)]
            return [order[start:start + batch_size] for start in range(0, len(order) - 1, batch_size)
                    if len(order[start:start + batch_size]) > 1]

        def collate(index: np.ndarray) -> dict[str, torch.Tensor]:
            input_ids, mask = pad_batch([*first[index], *second[index]])        # (2B, T): first B, then second B
            return {"input_ids": input_ids, "attention_mask": mask, "labels": torch.from_numpy(index + 1)}

        def loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
            return symmetric_infonce(states(model, batch["input_ids"], batch["attention_mask"]), temperature)

        return TrainData(batches, collate, loss), len(items)


def pooled_encoder_states(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor
                          ) -> torch.Tensor:
    """(2B, T) -> (2B, D): the mean of each row's encoder states over its tokens (encoder-decoder; the forward goes
    through the model itself, one decoder token, so precision and data-parallel wrappers apply)."""
    start = torch.full((len(input_ids), 1), model.config.decoder_start_token_id, device=input_ids.device)
    states = model(input_ids=input_ids, attention_mask=attention_mask,
                   decoder_input_ids=start).encoder_last_hidden_state      # (2B, T, D)
    weights = attention_mask[..., None].to(states.dtype)
    return (states * weights).sum(1) / weights.sum(1)


def next_item_states(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """(2B, 1 + W) one-item histories -> (2B, D): the head's state that writes the next item's first code."""
    out = model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
    return out.hidden_states[0][:, -1]


def symmetric_infonce(states: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE over (2B, D) states, row i paired with row i + B: the mean of the cross-entropies of
    softmax_j(cos(a_i, b_j) / tau) and softmax_j(cos(b_i, a_j) / tau) at j = i."""
    a, b = F.normalize(states.float(), dim=-1).chunk(2)                   # (B, D) each
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
