"""SASRec (Kang & McAuley 2018), ID-based, trained with a full softmax cross-entropy over the catalog
("SASRec-CE"): the classic sequential baseline, evaluated by the same leave-one-out full-ranking protocol, metrics
and result files as the generative T5 path. This module is the model and its batching and ranking; the run stages
(train / evaluate / recommend) are in `mmgr.engines.sasrec` and `mmgr.inference.sasrec`.

Model: item embedding (row 0 = padding, item i -> token i + 1), learned position embedding aligned to the right
(the newest item always sits at position `max_history - 1`, so extra left padding changes nothing), `num_layers`
pre-norm causal `nn.TransformerEncoderLayer` blocks (GELU), a final LayerNorm; scores = hidden @ item
embeddings.T (tied), over every real item.

Training: each user's training sequence (leave-one-out `train`, i.e. s[:-2]) is cut to its last
`max_history + 1` items; inputs are seq[:-1], targets seq[1:] at every position. Each epoch shuffles users with a
generator seeded by (seed, epoch), groups them by length into batches left-padded to their real length, and
shuffles the batch order. AdamW with linear warmup and cosine decay, gradient clipping, Fabric precision (bf16
autocast or fp32), validation NDCG@10 on a fixed `seeded_sample` of validation users every `eval_every` epochs,
early stopping after `patience` validations without improvement; the best weights go to `model.safetensors`.

Resume: `checkpoints/next-item/last.safetensors` (model, optimizer, scheduler, torch RNG, loop position) is written
at every epoch end and every `checkpoint_every` steps; since an epoch's batches are a function of (seed, epoch) and
the RNG is restored, a killed run restarted on the same run directory finishes with the same weights as an
uninterrupted one. Epoch granularity is the guarantee that is tested; mid-epoch checkpoints restart at the saved batch.

Ranking: exact top-k of the last position's scores over all items (history items are not filtered, as in the T5
protocol); validation history = train part, test history = s[:-1], both cut to `max_history`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the usual alias
from torch import nn

from mmgr.config import ModelConfig
from mmgr.errors import MmgrError
from mmgr.progress import progress_bar

PAD = 0
BUCKET_BATCHES = 64  # users are sorted by length within chunks of this many batches


# --- model ----------------------------------------------------------------------------------------

class SASRec(nn.Module):
    """Causal self-attention over item IDs; `forward(input_ids)` scores every item after the last position,
    `forward(input_ids, labels)` returns the mean full-softmax cross-entropy over non-padding positions."""

    def __init__(self, num_items: int, max_history: int, d_model: int, num_layers: int, num_heads: int,
                 d_ff: int, dropout: float) -> None:
        super().__init__()
        if d_model % num_heads:
            raise MmgrError(f"model.d_model ({d_model}) must be divisible by model.num_heads ({num_heads})")
        self.num_items, self.max_history, self.num_heads = num_items, max_history, num_heads
        self.item_embedding = nn.Embedding(num_items + 1, d_model, padding_idx=PAD)
        self.position_embedding = nn.Embedding(max_history, d_model)
        self.embedding_dropout = nn.Dropout(dropout)
        block = nn.TransformerEncoderLayer(d_model, num_heads, dim_feedforward=d_ff, dropout=dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(block, num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self._init_weights()

    def _init_weights(self) -> None:
        for embedding in (self.item_embedding, self.position_embedding):
            nn.init.normal_(embedding.weight, std=0.02)
        with torch.no_grad():
            self.item_embedding.weight[PAD].zero_()

    def hidden(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(B, T) left-padded tokens (0 = padding, T <= max_history) -> (B, T, D) hidden states."""
        input_ids = input_ids[:, -self.max_history:]
        width = input_ids.size(1)
        positions = torch.arange(width, device=input_ids.device) + (self.max_history - width)   # (T,) right-aligned
        scale = math.sqrt(self.item_embedding.embedding_dim)
        x = self.item_embedding(input_ids) * scale + self.position_embedding(positions)       # (B, T, D)
        x = self.blocks(self.embedding_dropout(x), mask=self._attention_mask(input_ids))
        return self.norm(x)

    def _attention_mask(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(B * heads, T, T) bool, True = blocked: causal, no padding keys; every query may see itself, so
        padding rows stay finite (their outputs are never used)."""
        width = input_ids.size(1)
        eye = torch.eye(width, dtype=torch.bool, device=input_ids.device)
        causal = torch.ones(width, width, dtype=torch.bool, device=input_ids.device).tril()
        allowed = (causal & input_ids.ne(PAD)[:, None, :]) | eye                           # (B, T, T)
        return (~allowed).repeat_interleave(self.num_heads, dim=0)

    def item_scores(self, hidden: torch.Tensor) -> torch.Tensor:
        """(..., D) -> (..., num_items): dot products with the (tied) item embeddings, padding row excluded."""
        return hidden @ self.item_embedding.weight[1:].T

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Without labels: (B, num_items) scores after the last position. With labels (B, T) (item tokens, 0 =
        padding, aligned with input_ids): the scalar mean cross-entropy."""
        hidden = self.hidden(input_ids)                                                      # (B, T, D)
        if labels is None:
            return self.item_scores(hidden[:, -1])                                           # (B, N)
        labels = labels[:, -hidden.size(1):]
        real = labels.ne(PAD)                                                                # (B, T)
        logits = self.item_scores(hidden[real])                                              # (M, N)
        return F.cross_entropy(logits.float(), labels[real] - 1)


def build_sasrec(cfg: ModelConfig, num_items: int, max_history: int, seed: int) -> SASRec:
    """A freshly initialised SASRec sized by `ModelConfig` (d_model, num_layers, num_heads, d_ff, dropout)."""
    torch.manual_seed(seed)
    return SASRec(num_items, max_history, cfg.d_model, cfg.num_layers, cfg.num_heads, cfg.d_ff, cfg.dropout)


# --- batches --------------------------------------------------------------------------------------

def training_sequences(train: list[np.ndarray], max_history: int) -> list[np.ndarray]:
    """Per user with >= 2 training items, the last `max_history + 1` items as tokens (item + 1)."""
    return [seq[-(max_history + 1):].astype(np.int64) + 1 for seq in train if len(seq) >= 2]


def pad_left(rows: list[np.ndarray]) -> torch.Tensor:
    """(B, T_max) int64, each row right-aligned after PAD tokens."""
    width = max(len(r) for r in rows)
    out = np.full((len(rows), width), PAD, dtype=np.int64)
    for i, row in enumerate(rows):
        out[i, width - len(row):] = row
    return torch.from_numpy(out)


def collate_sequences(sequences: list[np.ndarray], index: np.ndarray) -> dict[str, torch.Tensor]:
    """input_ids = seq[:-1], labels = seq[1:], both (B, T) left-padded to the batch's longest sequence."""
    rows = [sequences[i] for i in index.tolist()]
    return {"input_ids": pad_left([r[:-1] for r in rows]), "labels": pad_left([r[1:] for r in rows])}


def epoch_batches(lengths: np.ndarray, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """This epoch's batches (index arrays): users shuffled by (seed, epoch), sorted by length inside chunks of
    `BUCKET_BATCHES` batches (little padding), batch order shuffled. Always ceil(len / batch_size) batches."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(len(lengths), generator=generator).numpy()
    chunk = batch_size * BUCKET_BATCHES
    batches: list[np.ndarray] = []
    for start in range(0, len(order), chunk):
        part = order[start:start + chunk]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches += [part[i:i + batch_size] for i in range(0, len(part), batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


# --- ranking --------------------------------------------------------------------------------------

@torch.inference_mode()
def last_scores(model: nn.Module, histories: list[np.ndarray], batch_size: int = 256, progress: bool = False
                ) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """(user index, float scores (b, num_items)) after each history's last position, users batched by history
    length. `histories` are item indices (oldest first); an empty history is scored from a lone padding token."""
    device = next(model.parameters()).device
    order = np.argsort([len(h) for h in histories], kind="stable")
    model.eval()
    with progress_bar("ranking", total=len(histories), enabled=progress) as advance:
        for start in range(0, len(histories), batch_size):
            index = order[start:start + batch_size]
            rows = [np.asarray(histories[i], dtype=np.int64) + 1 if len(histories[i]) else np.array([PAD])
                    for i in index]
            yield index, model(pad_left(rows).to(device)).float()                             # (b, N)
            advance(len(index))


def rank_all_items(model: nn.Module, histories: list[np.ndarray], top_k: int, batch_size: int = 256,
                   progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(items int64[U, k], scores float32[U, k]) best first, k = min(top_k, num_items): exact top-k of the
    last position's scores over every catalog item (`last_scores`)."""
    k = min(top_k, _unwrap_sasrec(model).num_items)
    items = np.empty((len(histories), k), dtype=np.int64)
    scores = np.empty((len(histories), k), dtype=np.float32)
    for index, batch in last_scores(model, histories, batch_size, progress):
        top = torch.topk(batch, k, dim=-1)                                                   # (b, k)
        items[index], scores[index] = top.indices.cpu().numpy(), top.values.cpu().numpy()
    return items, scores


@torch.no_grad()
def heldout_loss(model: nn.Module, histories: list[np.ndarray], targets: np.ndarray, batch_size: int = 256) -> float:
    """Mean cross-entropy of each held-out item (`targets`, item indices) under the softmax over every item after
    its history: SASRec-CE's training loss, on held-out items."""
    total = 0.0
    for index, batch in last_scores(model, histories, batch_size):
        labels = torch.from_numpy(np.asarray(targets)[index]).to(batch.device)
        total += float(F.cross_entropy(batch, labels, reduction="sum"))
    return total / max(len(histories), 1)


def _unwrap_sasrec(model: nn.Module) -> SASRec:
    while not isinstance(model, SASRec):
        model = model.module
    return model
