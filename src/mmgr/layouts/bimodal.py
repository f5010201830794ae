"""SynGR's bimodal layout: every history item is written as its text codes then its image codes (modalities in the
recipe's order, no switch token), and the model is asked, by a task prompt, for one modality's SID of the next item:

    input  = <task:next:text>  [user] t(i_1) v(i_1) ... t(i_n) v(i_n) <eos>   ->  target t(i_{n+1})
    input  = <task:next:image> [user] t(i_1) v(i_1) ... t(i_n) v(i_n) <eos>   ->  target v(i_{n+1})

Each modality is a decoding target with its own trie; at inference both ranked lists are fused (`decoding.fusion`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mmgr.config import ModelConfig
from mmgr.layouts.base import LAYOUTS, LayoutKind, history_item_tokens, item_code_tokens, with_user_and_eos
from mmgr.layouts.late_fusion import concatenated_item_tokens
from mmgr.tokenizers.codes import ModalityCodes, Vocabulary


def next_sid_task(modality: str) -> str:
    """The task prompt that asks for the next item's SID of `modality`."""
    return f"next:{modality}"


@dataclass
class BimodalLayout:
    vocab: Vocabulary
    item_tokens: np.ndarray                   # (N, sum L_m): how an item is written in a history
    modality_tokens: dict[str, np.ndarray]    # the decoding targets, one per modality
    max_history: int
    user_token: bool = False
    prompted = True

    @property
    def history_width(self) -> int:
        return self.item_tokens.shape[1]

    @property
    def targets(self) -> dict[str, np.ndarray]:
        return self.modality_tokens

    def encoder_tokens(self, user_id: str, history: np.ndarray) -> np.ndarray:
        tokens = history_item_tokens(self.item_tokens, user_id, history, self.max_history)
        return with_user_and_eos(self.vocab, user_id, tokens, self.user_token)

    def target_input(self, target: str, tokens: np.ndarray) -> np.ndarray:
        return np.concatenate([[self.vocab.task_token(next_sid_task(target))], tokens]).astype(np.int64)


def build_bimodal(codes: dict[str, ModalityCodes], vocab: Vocabulary, cfg: ModelConfig,
                  max_history: int) -> BimodalLayout:
    per_modality = item_code_tokens(codes, vocab)
    item_tokens = concatenated_item_tokens(per_modality, vocab, False, "the bimodal layout")
    return BimodalLayout(vocab, item_tokens, per_modality, max_history, vocab.user_buckets > 0)


LAYOUTS.register("bimodal")(LayoutKind(build_bimodal, lambda modalities: tuple(map(next_sid_task, modalities))))
