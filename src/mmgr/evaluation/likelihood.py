"""Validation loss: the cross-entropy of each held-out item's SID given its history, teacher-forced through the
same inputs the beam search decodes from (the layout's input for each decoding target, the backbone's prompt).

    loss = - sum_u sum_t sum_l log p(c_l(target_u, t) | input_u,t, c_<l) / (number of target tokens)

over users u, decoding targets t of the layout (one for most layouts, one per modality for bimodal ones) and code
levels l: the mean negative log-likelihood per target token. Its sum over an item's levels is minus the beam score
of that item (before length normalisation). Unlike NDCG@10, it moves with every user's target, not only those in
the top 10, so it is far less noisy on a few hundred validation users; it is the loss the training objective of
TIGER-style models minimises, measured on held-out items."""

from __future__ import annotations

import numpy as np
import torch

from mmgr.data.splits import Examples
from mmgr.evaluation.protocol import Prompt
from mmgr.layouts.base import Layout
from mmgr.training.data import IGNORE, EncodedExamples, collate


def heldout_examples(layout: Layout, user_ids: list[str], examples: Examples,
                     prompt: Prompt | None = None) -> EncodedExamples:
    """One example per (user, decoding target): the search's input row and the held-out item's target tokens.
    Encoder-decoder (`prompt` None): input = the row, labels = the tokens. Decoder-only: input = prompt + the
    tokens, labels = -100 on the prompt then the tokens (the model shifts labels by one itself)."""
    histories = [layout.encoder_tokens(user_ids[u], h)
                 for u, h in zip(examples.users.tolist(), examples.histories, strict=True)]
    inputs, labels = [], []
    for target, table in layout.targets.items():
        for row, item in zip(histories, examples.targets.tolist(), strict=True):
            tokens = table[item].astype(np.int64)
            row = layout.target_input(target, row)
            if prompt is None:
                inputs.append(row)
                labels.append(tokens)
            else:
                context = prompt(layout.vocab, row)
                inputs.append(np.concatenate([context, tokens]))
                labels.append(np.concatenate([np.full(len(context), IGNORE), tokens]))
    copies = len(layout.targets)
    return EncodedExamples(inputs, labels, np.tile(examples.targets, copies), np.tile(examples.users, copies))


@torch.no_grad()
def heldout_loss(model: torch.nn.Module, examples: EncodedExamples, batch_size: int) -> float:
    """Mean cross-entropy per target token of `examples` (`heldout_examples`), in batches of similar length."""
    device = next(model.parameters()).device
    order = np.argsort([len(x) for x in examples.inputs], kind="stable")
    total, count = 0.0, 0
    model.eval()
    for start in range(0, len(order), batch_size):
        batch = {k: v.to(device) for k, v in collate(examples, order[start:start + batch_size]).items()}
        tokens = int(batch["labels"].ne(IGNORE).sum())
        total += float(model(**batch).loss) * tokens
        count += tokens
    return total / max(count, 1)
