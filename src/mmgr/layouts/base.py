"""The layout contract and the TIGER layout (one semantic ID per item).

A layout turns (user, history of item indices) into encoder token ids and an item into its decoder target
tokens; `item_tokens` (int64[N, L]) is the table every decoding trie is built from. Multimodal layouts (late
fusion with switch tokens, per-modality views) implement the same three members.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from mmgr.errors import MmgrError
from mmgr.registry import Registry
from mmgr.tokenizers.codes import ModalityCodes, Vocabulary


class Layout(Protocol):
    vocab: Vocabulary
    item_tokens: np.ndarray       # (N, L) decoder target tokens per item

    def encoder_tokens(self, user_id: str, history: np.ndarray) -> np.ndarray:
        """int64[T] for one user's history (item indices, oldest first)."""
        ...


LAYOUTS: Registry[type] = Registry("layout")


@LAYOUTS.register("single")
@dataclass
class SingleSidLayout:
    """TIGER: [user bucket] + the codes of the `max_history` most recent items, then <eos>; target = item codes."""

    vocab: Vocabulary
    item_tokens: np.ndarray
    max_history: int
    user_token: bool = False

    @classmethod
    def from_codes(cls, codes: ModalityCodes, max_history: int, user_buckets: int = 0) -> SingleSidLayout:
        vocab = Vocabulary({codes.modality: list(codes.sizes)}, user_buckets=user_buckets)
        return cls(vocab, vocab.encode(codes.modality, codes.codes), max_history, user_buckets > 0)

    def encoder_tokens(self, user_id: str, history: np.ndarray) -> np.ndarray:
        history = np.asarray(history, dtype=np.int64)[-self.max_history:]
        if history.size == 0:
            raise MmgrError(f"user {user_id!r} has an empty history; a generative recommender needs at least one "
                            "item (recommend popular items for cold users instead)")
        if history.min() < 0 or history.max() >= len(self.item_tokens):
            raise MmgrError(f"user {user_id!r}: history holds unknown item indices (catalog has "
                            f"{len(self.item_tokens)} items)")
        parts = [self.item_tokens[history].reshape(-1), [self.vocab.token("<eos>")]]
        if self.user_token:
            parts.insert(0, [self.vocab.user_token(user_id)])
        return np.concatenate(parts).astype(np.int64)


def pad_batch(rows: list[np.ndarray], pad: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """input_ids and attention_mask (B, T_max) for ragged token rows, padded to the batch's real length."""
    width = max(len(r) for r in rows)
    ids = np.full((len(rows), width), pad, dtype=np.int64)
    for i, row in enumerate(rows):
        ids[i, :len(row)] = row
    input_ids = torch.from_numpy(ids)
    return input_ids, input_ids.ne(pad).long()
