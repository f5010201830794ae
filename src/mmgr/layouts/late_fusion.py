"""MGR-LF / MGR-LF++ layout: one semantic ID per modality, concatenated per item.

Item tokens: `c_t1 .. c_tL [<switch>] c_v1 .. c_vL` (modalities in the recipe's order, `<switch>` at every change
of modality when `model.switch_tokens` is on). History items are written the same way, so the encoder reads what
the decoder writes; the target is the item's whole multimodal tuple and the decoding trie is built over it.

Uniqueness is needed only for the joint tuple. Codes made unique per modality by an appended collision level
(`collisions=append`) lose that level here, except the last modality's, which numbers the items sharing the whole
joint tuple instead (`joint_collision_level`): otherwise every text tuple would already be unique, and the image
half a forced suffix that could never correct a text error. The joint number always fits the last modality's
collision level, since items sharing the joint tuple also share that modality's semantic codes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mmgr.config import ModelConfig
from mmgr.errors import MmgrError
from mmgr.layouts.base import LAYOUTS, LayoutKind, OneTarget, history_item_tokens, item_code_tokens, with_user_and_eos
from mmgr.tokenizers.codes import ModalityCodes, Vocabulary
from mmgr.tokenizers.collisions import append_level


@dataclass
class LateFusionLayout(OneTarget):
    vocab: Vocabulary
    item_tokens: np.ndarray                   # (N, sum L_m [+ switches])
    modality_tokens: dict[str, np.ndarray]
    max_history: int
    switch_tokens: bool
    user_token: bool = False

    def encoder_tokens(self, user_id: str, history: np.ndarray) -> np.ndarray:
        tokens = history_item_tokens(self.item_tokens, user_id, history, self.max_history)
        return with_user_and_eos(self.vocab, user_id, tokens, self.user_token)


def build_late_fusion(codes: dict[str, ModalityCodes], vocab: Vocabulary, cfg: ModelConfig,
                      max_history: int) -> LateFusionLayout:
    per_modality = item_code_tokens(codes, vocab)
    joint = joint_collision_level(codes, per_modality, vocab)
    item_tokens = concatenated_item_tokens(joint, vocab, cfg.switch_tokens, "late fusion")
    return LateFusionLayout(vocab, item_tokens, per_modality, max_history, cfg.switch_tokens, vocab.user_buckets > 0)


def joint_collision_level(codes: dict[str, ModalityCodes], per_modality: dict[str, np.ndarray],
                          vocab: Vocabulary) -> dict[str, np.ndarray]:
    """Each modality's tokens per item with the per-modality collision levels replaced by one joint level: the
    appended level of every modality but the last is dropped, and the last one's numbers the items that share the
    rest of the joint tuple (0, 1, ... in catalog order, so existing items keep theirs when items are added)."""
    names = list(per_modality)
    parts = {m: per_modality[m][:, :-1] if codes[m].appended else per_modality[m] for m in names}
    last = names[-1]
    if not codes[last].appended:
        return parts                                   # the last modality's tuples are unique on their own
    semantic = np.concatenate(list(parts.values()), axis=1)
    numbered, _ = append_level(semantic, capacity=1)
    offset = vocab.offsets(last)[-1]
    parts[last] = np.concatenate([parts[last], numbered[:, -1:] + offset], axis=1)
    return parts


def concatenated_item_tokens(per_modality: dict[str, np.ndarray], vocab: Vocabulary, switch_tokens: bool,
                             method: str) -> np.ndarray:
    """(N, sum L_m [+ switches]): each item's modality codes side by side, refused unless every tuple is unique."""
    if len(per_modality) < 2:
        raise MmgrError(f"{method} concatenates two or more modalities' codes, got {', '.join(per_modality)}; "
                        "use model.layout=single for one")
    parts: list[np.ndarray] = []
    switch = np.full((len(next(iter(per_modality.values()))), 1), vocab.token("<switch>"), dtype=np.int64)
    for index, tokens in enumerate(per_modality.values()):
        if index and switch_tokens:
            parts.append(switch)
        parts.append(tokens)
    item_tokens = np.concatenate(parts, axis=1)
    duplicates = len(item_tokens) - len(np.unique(item_tokens, axis=0))
    if duplicates:
        raise MmgrError(f"{method}: {duplicates} items share their whole multimodal tuple with another item "
                        "(items that lack every modality?); their codes cannot be told apart when decoding")
    return item_tokens


LAYOUTS.register("late-fusion")(LayoutKind(build_late_fusion))
