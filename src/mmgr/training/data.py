"""Next-item examples and length-bucketed batches padded to their real length.

Training examples are every prefix of each user's training sequence (history s[:i] -> target s[i]), as TIGER
trains; other objectives (alignment tasks) build examples of the same shape. Targets may be ragged: labels are
padded with -100, which the loss ignores. Each epoch draws its batches from (seed, epoch) alone: equal-length
examples shuffled, sorted by encoder length, cut into batches, the batches shuffled; so a resumed run sees exactly
the batches it would have seen.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from mmgr.errors import MmgrError
from mmgr.layouts.base import Layout, pad_batch

IGNORE = -100          # label of a padding position (never trained on)


@dataclass
class EncodedExamples:
    """Token arrays of many examples: encoder inputs and decoder targets (both may be ragged)."""

    inputs: list[np.ndarray]     # E arrays of token ids
    labels: list[np.ndarray]     # E arrays of target tokens
    targets: np.ndarray          # (E,) target item index
    users: np.ndarray            # (E,) user row

    def __len__(self) -> int:
        return len(self.inputs)


def prefix_examples(train: list[np.ndarray], max_history: int) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """(users, histories, targets) for every position i >= 1 of every training sequence."""
    users, histories, targets = [], [], []
    for user, sequence in enumerate(train):
        for i in range(1, len(sequence)):
            users.append(user)
            histories.append(sequence[max(0, i - max_history):i])
            targets.append(sequence[i])
    return np.asarray(users, dtype=np.int64), histories, np.asarray(targets, dtype=np.int64)


def encode_examples(layout: Layout, user_ids: list[str], users: np.ndarray, histories: list[np.ndarray],
                    targets: np.ndarray) -> EncodedExamples:
    """One example per (history, decoding target of the layout): the input asking for that target, its tokens."""
    tokens = [layout.encoder_tokens(user_ids[u], h) for u, h in zip(users.tolist(), histories, strict=True)]
    inputs, labels = [], []
    for target, table in layout.targets.items():
        inputs += [layout.target_input(target, row) for row in tokens]
        labels += list(table[targets])
    copies = len(layout.targets)
    return EncodedExamples(inputs, labels, np.tile(targets, copies), np.tile(users, copies))


def causal_windows(train: list[np.ndarray], max_history: int) -> Iterator[tuple[int, np.ndarray]]:
    """(user row, window) for every window of `max_history + 1` training items of each user, newest first; windows
    overlap by one item, so every item after a user's first ends up a target exactly once, with up to
    `max_history` items before it."""
    for user, sequence in enumerate(train):
        for end in range(len(sequence), 1, -max_history):
            yield user, np.asarray(sequence[max(0, end - max_history - 1):end], dtype=np.int64)


def causal_examples(layout: Layout, user_ids: list[str], train: list[np.ndarray],
                    max_history: int) -> EncodedExamples:
    """Causal backbone: one example per window (`causal_windows`). Inputs = `<bos> [user] c(item_1) ... c(item_n)`;
    labels = the same tokens with -100 on <bos>, the user token and the window's first item, which are context, not
    targets (the model shifts labels by one itself)."""
    if list(layout.targets) != ["item"]:
        raise MmgrError(f"the causal backbone continues a history with the next item's whole tuple; this layout asks "
                        f"for {', '.join(layout.targets)} separately (use model.kind=t5)")
    vocab, width = layout.vocab, layout.item_tokens.shape[1]
    inputs, labels, targets, users = [], [], [], []
    for user, window in causal_windows(train, max_history):
        head = [vocab.token("<bos>"), *([vocab.user_token(user_ids[user])] if layout.user_token else [])]
        tokens = np.concatenate([head, layout.item_tokens[window].reshape(-1)]).astype(np.int64)
        context = len(head) + width
        inputs.append(tokens)
        labels.append(np.concatenate([np.full(context, IGNORE), tokens[context:]]))
        targets.append(window[-1])
        users.append(user)
    return EncodedExamples(inputs, labels, np.asarray(targets, dtype=np.int64), np.asarray(users, dtype=np.int64))


BATCHING = "length-sorted, redrawn per epoch"  # in the checkpoint setup id: a change of scheme is not resumed


def length_batches(examples: EncodedExamples, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """Example indices in batches of similar encoder length, in a random order, drawn afresh for each epoch from
    (seed, epoch) alone (a resumed run redraws the same ones). Examples of equal length are shuffled before they are
    cut into batches, so a batch mixes users and tasks instead of holding one user's consecutive windows (a long
    history yields many windows of the longest length) or one task's rows."""
    lengths = np.fromiter((len(x) for x in examples.inputs), dtype=np.int64, count=len(examples))
    shuffled = np.random.default_rng([seed, epoch]).permutation(len(lengths))
    order = shuffled[np.argsort(lengths[shuffled], kind="stable")]
    batches = [order[start:start + batch_size] for start in range(0, len(order), batch_size)]
    return [batches[i] for i in epoch_order(len(batches), seed, epoch)]


def epoch_order(num_batches: int, seed: int, epoch: int) -> list[int]:
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(num_batches, generator=generator).tolist()


def collate(examples: EncodedExamples, index: np.ndarray, pad: int = 0) -> dict[str, torch.Tensor]:
    """input_ids / attention_mask (B, T_max of this batch), labels (B, L_max of this batch; -100 pads)."""
    input_ids, attention_mask = pad_batch([examples.inputs[i] for i in index.tolist()], pad)
    labels, _ = pad_batch([examples.labels[i] for i in index.tolist()], IGNORE)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
