"""The causal (decoder-only) SID generator: a transformers Llama block stack sized by `ModelConfig` (`d_model`,
`num_layers`, `num_heads` x `d_kv`, `d_ff`; `dropout` on attention probabilities, `hidden_dropout` on the
embeddings and every block's output), RoPE positions, SDPA attention.

A user's history is one token sequence, `<bos> [user] c(item_1) c(item_2) ... c(item_n)` (each item's tokens as
the layout writes them, switches included), and one forward pass gives a teacher-forced loss at every item after
the first: a sequence of n items trains n - 1 next-item targets (`mmgr.training.data.causal_examples`). At
inference the prompt is the same sequence for the history and the
model writes the next item's tokens (`mmgr.decoding.causal`).
"""

from __future__ import annotations

import numpy as np
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from mmgr.config import ModelConfig
from mmgr.errors import MmgrError
from mmgr.models.dropout import fast_dropout
from mmgr.tokenizers.codes import Vocabulary

MAX_POSITIONS = 4096


def llama_config(cfg: ModelConfig, vocab: Vocabulary, backbone: str = "the causal backbone") -> LlamaConfig:
    """Llama blocks sized by `model.*` over the run's vocabulary, SDPA attention."""
    if cfg.d_model % cfg.num_heads:
        raise MmgrError(f"{backbone} (Llama blocks) needs model.d_model ({cfg.d_model}) divisible by "
                        f"model.num_heads ({cfg.num_heads}), e.g. model.num_heads=4 model.d_kv=32")
    config = LlamaConfig(vocab_size=vocab.size, hidden_size=cfg.d_model, intermediate_size=cfg.d_ff,
                         num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
                         num_key_value_heads=cfg.num_heads, head_dim=cfg.d_kv, attention_dropout=cfg.dropout,
                         max_position_embeddings=MAX_POSITIONS, tie_word_embeddings=False,
                         pad_token_id=vocab.token("<pad>"), bos_token_id=vocab.token("<bos>"),
                         eos_token_id=vocab.token("<eos>"))
    config._attn_implementation = "sdpa"
    return config


def build_causal(cfg: ModelConfig, vocab: Vocabulary, seed: int) -> LlamaForCausalLM:
    config = llama_config(cfg, vocab)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    add_hidden_dropout(model.model.layers, cfg.hidden_dropout, model.model.embed_tokens)
    return model


def add_hidden_dropout(layers: torch.nn.ModuleList, p: float, embeddings: torch.nn.Module | None = None) -> None:
    """Dropout (active in training mode only) on each Llama layer's attention and feed-forward output before its
    residual add, and on the output of `embeddings`, as forward hooks on these modules."""
    if p == 0.0:
        return

    def drop(module: torch.nn.Module, inputs: tuple, output: torch.Tensor | tuple) -> torch.Tensor | tuple:
        if isinstance(output, tuple):                          # attention: (output, weights)
            return (fast_dropout(output[0], p, module.training), *output[1:])
        return fast_dropout(output, p, module.training)

    blocks = [module for layer in layers for module in (layer.self_attn, layer.mlp)]
    for module in [*([embeddings] if embeddings is not None else []), *blocks]:
        module.register_forward_hook(drop)


def causal_prompt(vocab: Vocabulary, encoder_tokens: np.ndarray) -> np.ndarray:
    """The layout's history tokens ([user] + items + <eos>) as a causal prompt: <bos> + [user] + items."""
    return np.concatenate([[vocab.token("<bos>")], encoder_tokens[:-1]]).astype(np.int64)
