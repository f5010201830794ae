"""Sequence-model backbones of the generative path (`model.kind`), one registry entry each:

- `t5`: encoder-decoder (TIGER); the history is the encoder input, the next item's tokens the decoder target.
  Next-item examples are every prefix of every training sequence. Trains every objective.
- `causal`: decoder-only (Llama blocks); the history is the prompt and the model continues it with the next
  item's tokens. One sequence trains a target at every item position. Trains next-item and TriAlignGR's tmt.
- `item-causal`: the same sequences, examples and search, with one transformer position per history item
  (`models/item_causal.py`); its head writes any target up to a history item's width, so it also trains
  MQL4GRec's tasks across modalities and SynGR's one-modality targets after bimodal items. Trains next-item,
  mql4grec, syngr, syngr-released and the translate alignment.

- `llm`: a pretrained causal LM with LoRA adapters (`models/pretrained.py`), read like `causal`.

All decode through the same prefix trie and beam step, with the same result contract. A backbone says how it is
built, searched and prompted and whether it reads decoder-only sequences (how next-item examples are cut); each
objective names the backbones that train it (`Objective.backbones`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from torch import Tensor, nn

from mmgr.config import ModelConfig
from mmgr.decoding.beam import constrained_beam_search
from mmgr.decoding.causal import causal_beam_search
from mmgr.models.causal import build_causal, causal_prompt
from mmgr.models.item_causal import build_item_causal
from mmgr.models.pretrained import build_pretrained
from mmgr.models.seq2seq import build_t5
from mmgr.registry import Registry
from mmgr.tokenizers.codes import Vocabulary


@dataclass(frozen=True)
class Backbone:
    build: Callable[[ModelConfig, Vocabulary, int, int, int, int], nn.Module]  # (cfg, vocab, seed, tokens per
    #                                          history item, task tokens before the history, tokens per target)
    search: Callable[..., tuple[Tensor, Tensor]]                 # (model, input_ids, mask, trie, beam, top_k)
    prompt: Callable[[Vocabulary, np.ndarray], np.ndarray] | None  # layout history tokens -> model input
    decoder_only: bool                                           # one sequence, a target at every item position
    words: Callable[[ModelConfig], str] = lambda cfg: cfg.words  # the subword tokenizer of text objectives
    item_level: bool = False                                     # one position per history item


def token_level(build: Callable[[ModelConfig, Vocabulary, int], nn.Module]
                ) -> Callable[[ModelConfig, Vocabulary, int, int, int, int], nn.Module]:
    """A builder of a model that reads tokens one by one (it needs no item width)."""
    return lambda cfg, vocab, seed, item_width, task_tokens, target_width: build(cfg, vocab, seed)


BACKBONES: Registry[Backbone] = Registry("backbone")
BACKBONES.register("t5")(Backbone(token_level(build_t5), constrained_beam_search, None, False))
BACKBONES.register("causal")(Backbone(token_level(build_causal), causal_beam_search, causal_prompt, True))
BACKBONES.register("item-causal")(Backbone(build_item_causal, causal_beam_search, causal_prompt, True,
                                           item_level=True))
BACKBONES.register("llm")(Backbone(token_level(build_pretrained), causal_beam_search, causal_prompt, True,
                                   lambda cfg: cfg.llm.pretrained))
