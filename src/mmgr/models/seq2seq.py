"""The generative recommender: a T5 encoder-decoder from transformers' T5 modules, sized by `ModelConfig`
(TIGER: 4 + 4 layers, 6 heads x 64, d_model 128, d_ff 1024, dropout 0.1). Token 0 is both padding and the
decoder start token, as in T5. With `model.recency_embeddings` the encoder's token embeddings carry each token's
distance from the end of its history (`RecencyEmbedding`)."""

from __future__ import annotations

import torch
from torch import Tensor, nn
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
    model = T5ForConditionalGeneration(t5_config(cfg, vocab))
    if cfg.recency_embeddings:
        model.encoder.embed_tokens = RecencyEmbedding(model.shared, cfg.recency_embeddings, vocab.token("<pad>"))
    return use_fast_dropout(model)


class RecencyEmbedding(nn.Module):
    """Token embeddings plus a learned embedding of each token's distance from the last non-padding token of its
    row (0 = the last token; left or right padding alike). T5's decoder reads the history through cross-attention,
    which has no positions: without this it must first learn, through the encoder's relative biases, to mark which
    tokens belong to the latest items (measured: a long plateau before the next item is learnt)."""

    def __init__(self, tokens: nn.Embedding, distances: int, pad: int) -> None:
        super().__init__()
        self.tokens, self.pad = tokens, pad
        self.recency = nn.Embedding(distances, tokens.embedding_dim)
        nn.init.normal_(self.recency.weight, std=float(tokens.weight.detach().std()))  # the token embeddings' scale

    def distances(self, input_ids: Tensor) -> Tensor:                           # (B, T) -> (B, T)
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)  # (T,)
        last = torch.where(input_ids != self.pad, positions, -1).amax(dim=1, keepdim=True)  # (B, 1)
        return (last - positions).clamp(0, self.recency.num_embeddings - 1)    # padding after the end: 0

    def forward(self, input_ids: Tensor) -> Tensor:                             # (B, T) -> (B, T, D)
        return self.tokens(input_ids) + self.recency(self.distances(input_ids))
