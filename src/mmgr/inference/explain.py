"""What a generative model writes about an item from its SID: TriAlignGR's `sid->FIELD` tasks (title, interests,
visual description) decoded by ordinary generation restricted to the text tokens (`mmgr.decoding.text`)."""

from __future__ import annotations

import torch

from mmgr.config import Config
from mmgr.decoding.text import generate_text
from mmgr.layouts.base import Layout, task_prompt
from mmgr.tokenizers.codes import Vocabulary
from mmgr.tokenizers.words import WordCodec


def explained_fields(config: Config, vocab: Vocabulary) -> tuple[str, ...]:
    """The text fields the run's model was trained to write from a SID: the recipe's `sid->FIELD` text tasks that
    its vocabulary holds a prompt for (() for runs trained without text tasks)."""
    return tuple(name.partition("->")[2] for name in config.training.tmt.tasks
                 if name.startswith("sid->") and name in vocab.tasks)


def describe_items(model: torch.nn.Module, layout: Layout, items: list[int], fields: tuple[str, ...],
                   max_text_tokens: int) -> list[dict[str, str]]:
    """Per item, the model's text for each field from the prompt `<task:sid->FIELD> SID`."""
    vocab = layout.vocab
    codec = WordCodec(vocab, max_text_tokens)
    out: list[dict[str, str]] = [{} for _ in items]
    for field in fields:
        prompts = [task_prompt(vocab, f"sid->{field}", layout.item_tokens[item]) for item in items]
        written = generate_text(model, prompts, codec.allowed(), vocab.token("<eos>"), vocab.token("<pad>"),
                                max_text_tokens + 1)
        for row, tokens in zip(out, written, strict=True):
            row[field] = codec.decode(tokens)
    return out
