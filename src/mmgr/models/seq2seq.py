"""The generative recommender: a T5 encoder-decoder from transformers' T5 modules, sized by `ModelConfig`
(TIGER: 4 + 4 layers, 6 heads x 64, d_model 128, d_ff 1024, dropout 0.1). Token 0 is both padding and the
decoder start token, as in T5."""

from __future__ import annotations

import torch
from transformers import T5Config, T5ForConditionalGeneration

from mmgr.config import ModelConfig
from mmgr.models.dropout import use_fast_dropout
from mmgr.tokenizers.codes import Vocabulary


def t5_config(cfg: ModelConfig, vocab: Vocabulary) -> T5Config:
    return T5Config(vocab_size=vocab.size, d_model=cfg.d_model, d_kv=cfg.d_kv, d_ff=cfg.d_ff,
                    num_layers=cfg.num_layers, num_decoder_layers=cfg.num_decoder_layers, num_heads=cfg.num_heads,
                    dropout_rate=cfg.dropout, feed_forward_proj="relu", tie_word_embeddings=False,
                    pad_token_id=vocab.token("<pad>"), eos_token_id=vocab.token("<eos>"),
                    decoder_start_token_id=vocab.token("<pad>"))


def build_t5(cfg: ModelConfig, vocab: Vocabulary, seed: int) -> T5ForConditionalGeneration:
    """Seeded T5 with eager attention and the cheaper CPU dropout of `models/dropout.py` (same parameters)."""
    torch.manual_seed(seed)
    return use_fast_dropout(T5ForConditionalGeneration(t5_config(cfg, vocab)))
