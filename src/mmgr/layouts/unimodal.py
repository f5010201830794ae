"""MQL4GRec's layout (arXiv 2504.05314, ICLR 2025, as SynGR's released scripts train it): each decoding target is one
modality's SID of the next item, asked for by a task prompt in front of the history written in that same modality:

    input  = <task:seq:text->text>   [user] t(i_1) ... t(i_n) <eos>   ->  target t(i_{n+1})
    input  = <task:seq:image->image> [user] v(i_1) ... v(i_n) <eos>   ->  target v(i_{n+1})

Both ranked lists are fused at inference (`decoding.fusion`). `encoder_tokens` writes every modality of each history
item (text codes then image codes, as the bimodal layout does); `source_input` keeps one modality's codes of it and
puts the prompt of a task in front, so the multitask objective can also ask across modalities
(`seq:text->image`: the next image SID from a text history).

`unimodal-wide` writes the same one-modality histories at the bimodal width, each item keeping a slot for every
modality's codes and the other modalities' slots holding `<pad>`. An item-level backbone sums an item's code
embeddings and `<pad>`'s is zero, so such a row reads as its one-modality history while one model also reads
bimodal histories (SynGR as its authors release it trains on both; `objectives/syngr_released.py`). Token-level
backbones would attend those pads: it is for `model.kind=item-causal`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mmgr.config import ModelConfig
from mmgr.errors import MmgrError
from mmgr.layouts.base import LAYOUTS, LayoutKind, item_code_tokens
from mmgr.layouts.bimodal import BimodalLayout
from mmgr.layouts.late_fusion import concatenated_item_tokens
from mmgr.tokenizers.codes import ModalityCodes, Vocabulary


def sequence_task(source: str, target: str) -> str:
    """The prompt that asks for the next item's `target` SID from a history written in `source` codes."""
    return f"seq:{source}->{target}"


@dataclass
class UnimodalHistoryLayout(BimodalLayout):
    """The bimodal layout's items, targets and histories, each target asked from the history in its own modality."""

    token_kinds: np.ndarray = field(init=False, repr=False)   # (V,) modality index per token id (-1: others)

    def __post_init__(self) -> None:
        self.token_kinds = self.vocab.modality_ids()

    @property
    def history_width(self) -> int:
        """One modality's SID length (every history is written in one modality)."""
        widths = {m: t.shape[1] for m, t in self.modality_tokens.items()}
        if len(set(widths.values())) != 1:
            raise MmgrError("the modalities' SIDs differ in length ("
                            + ", ".join(f"{m} {w}" for m, w in widths.items())
                            + "), so a history item has no one width; give them the same number of levels")
        return next(iter(widths.values()))

    def target_input(self, target: str, tokens: np.ndarray) -> np.ndarray:
        return self.source_input(target, target, tokens)

    def source_input(self, source: str, target: str, tokens: np.ndarray) -> np.ndarray:
        """`<task:seq:source->target>` + the `source` code tokens of `encoder_tokens` (and its user and <eos>)."""
        kinds = self.token_kinds[tokens]                                    # -1: user, <eos>
        kept = tokens[(kinds == list(self.vocab.levels).index(source)) | (kinds < 0)]
        return np.concatenate([[self.vocab.task_token(sequence_task(source, target))], kept]).astype(np.int64)


@dataclass
class WideUnimodalLayout(UnimodalHistoryLayout):
    """One-modality histories, each item as wide as a bimodal one: the other modalities' codes become `<pad>`."""

    @property
    def history_width(self) -> int:
        return self.item_tokens.shape[1]

    def source_input(self, source: str, target: str, tokens: np.ndarray) -> np.ndarray:
        """`<task:seq:source->target>` + `encoder_tokens` with every other modality's code tokens as `<pad>`."""
        written = self.written_in(source, tokens)
        return np.concatenate([[self.vocab.task_token(sequence_task(source, target))], written]).astype(np.int64)

    def written_in(self, source: str, tokens: np.ndarray) -> np.ndarray:
        """`tokens` (any shape) with every code token of a modality other than `source` as `<pad>` (users, specials
        and prompts kept): `written_in(m, item_tokens)` is every item as an `m` history writes it."""
        kinds = self.token_kinds[tokens]                                    # -1: user, <eos>, prompts
        other = (kinds >= 0) & (kinds != list(self.vocab.levels).index(source))
        return np.where(other, self.vocab.token("<pad>"), tokens)


def build_unimodal(codes: dict[str, ModalityCodes], vocab: Vocabulary, cfg: ModelConfig,
                   max_history: int) -> UnimodalHistoryLayout:
    per_modality = item_code_tokens(codes, vocab)
    item_tokens = concatenated_item_tokens(per_modality, vocab, False, "the unimodal-history layout")
    return UnimodalHistoryLayout(vocab, item_tokens, per_modality, max_history, vocab.user_buckets > 0)


def build_wide(codes: dict[str, ModalityCodes], vocab: Vocabulary, cfg: ModelConfig,
               max_history: int) -> WideUnimodalLayout:
    narrow = build_unimodal(codes, vocab, cfg, max_history)
    return WideUnimodalLayout(vocab, narrow.item_tokens, narrow.modality_tokens, max_history, narrow.user_token)


def own_tasks(modalities: list[str]) -> tuple[str, ...]:
    """`seq:m->m` for every modality: the decoding targets' prompts."""
    return tuple(sequence_task(m, m) for m in modalities)


LAYOUTS.register("unimodal")(LayoutKind(build_unimodal, own_tasks))
LAYOUTS.register("unimodal-wide")(LayoutKind(build_wide, own_tasks, backbones=("item-causal",)))
