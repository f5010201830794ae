"""The layout contract and the TIGER layout (one semantic ID per item).

A layout turns (user, history of item indices) into encoder token ids and an item into its decoder target
tokens. `item_tokens` (int64[N, L]) is how an item is written in a history; `targets` names what the model is
asked to generate (one table per target, one decoding trie each: TIGER and MGR-LF have one, `item` = `item_tokens`;
SynGR has one per modality, asked for by a task prompt that `target_input` puts in front of the history, and their
ranked lists are fused). `modality_tokens` holds each modality's own code tokens per item (what alignment tasks
translate between) and `prompt` builds a task-prompted input from them. Every token's modality is a fact of the
shared vocabulary (`token_modalities`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from mmgr.config import ModelConfig
from mmgr.errors import MmgrError
from mmgr.registry import Registry
from mmgr.tokenizers.codes import ModalityCodes, Vocabulary


class Layout(Protocol):
    vocab: Vocabulary
    item_tokens: np.ndarray                   # (N, L) decoder target tokens per item
    modality_tokens: dict[str, np.ndarray]    # modality -> (N, L_m) that modality's code tokens per item
    user_token: bool                          # histories start with the user's hashed bucket token
    prompted: bool                            # `target_input` puts a task token in front of the history

    @property
    def history_width(self) -> int:
        """Tokens per history item in the model's input, `target_input` (an item-level backbone sums them into
        one position)."""
        ...

    @property
    def targets(self) -> dict[str, np.ndarray]:
        """Decoding target -> (N, L_t) target tokens per item (one trie each; several are fused)."""
        ...

    def encoder_tokens(self, user_id: str, history: np.ndarray) -> np.ndarray:
        """int64[T] for one user's history (item indices, oldest first)."""
        ...

    def target_input(self, target: str, tokens: np.ndarray) -> np.ndarray:
        """The encoder input that asks for `target`, from a history's `encoder_tokens`."""
        ...


class LayoutBuilder(Protocol):
    def __call__(self, codes: dict[str, ModalityCodes], vocab: Vocabulary, cfg: ModelConfig,
                 max_history: int) -> Layout: ...


def no_tasks(modalities: list[str]) -> tuple[str, ...]:
    return ()


@dataclass(frozen=True)
class LayoutKind:
    """A registered layout: its builder, the task prompts it writes (they go into the run's vocabulary) and the
    backbones (`model.kind`) that read it (None: every one)."""

    build: LayoutBuilder
    tasks: Callable[[list[str]], tuple[str, ...]] = no_tasks
    backbones: tuple[str, ...] | None = None


LAYOUTS: Registry[LayoutKind] = Registry("layout")


class OneTarget:
    """Layouts whose model generates the whole `item_tokens` tuple, with no task prompt."""

    item_tokens: np.ndarray
    prompted = False

    @property
    def history_width(self) -> int:
        return self.item_tokens.shape[1]

    @property
    def targets(self) -> dict[str, np.ndarray]:
        return {"item": self.item_tokens}

    def target_input(self, target: str, tokens: np.ndarray) -> np.ndarray:
        return tokens


def item_code_tokens(codes: dict[str, ModalityCodes], vocab: Vocabulary) -> dict[str, np.ndarray]:
    """Each vocabulary modality's code tokens per item (N, L_m), the missing-modality policy applied."""
    missing = [m for m in vocab.levels if m not in codes]
    if missing:
        raise MmgrError(f"no {', '.join(missing)} codes in this run; run `mmgr tokenize RUN --modality "
                        f"{missing[0]}` (have: {', '.join(codes) or 'none'})")
    for m in vocab.levels:
        if codes[m].missing.any() and vocab.levels[m][0] <= codes[m].sizes[0]:
            raise MmgrError(f"this run's vocabulary has no code for a missing {m} (it was trained before multimodal "
                            f"runs reserved one): re-run `mmgr train` to add items without {m}")
    return {m: vocab.encode(m, codes[m].with_missing_reserved().codes) for m in vocab.levels}


def history_item_tokens(item_tokens: np.ndarray, user_id: str, history: np.ndarray, max_history: int) -> np.ndarray:
    """The flattened item tokens of the `max_history` most recent items, with clear errors for bad histories."""
    history = np.asarray(history, dtype=np.int64)[-max_history:]
    if history.size == 0:
        raise MmgrError(f"user {user_id!r} has an empty history; a generative recommender needs at least one "
                        "item (recommend popular items for cold users instead)")
    if history.min() < 0 or history.max() >= len(item_tokens):
        raise MmgrError(f"user {user_id!r}: history holds unknown item indices (catalog has "
                        f"{len(item_tokens)} items)")
    return item_tokens[history].reshape(-1)


def with_user_and_eos(vocab: Vocabulary, user_id: str, tokens: np.ndarray, user_token: bool) -> np.ndarray:
    """[user bucket] + tokens + <eos> as int64[T]."""
    parts = [tokens, [vocab.token("<eos>")]]
    if user_token:
        parts.insert(0, [vocab.user_token(user_id)])
    return np.concatenate(parts).astype(np.int64)


def translation_task(source: str, target: str) -> str:
    """The task prompt that asks for an item's `target` SID from its `source` SID."""
    return f"{source}->{target}"


def translation_prompts(vocab: Vocabulary) -> np.ndarray:
    """bool (V,): the vocabulary's translation task tokens (their rows hold one item, not a history)."""
    flags = np.zeros(vocab.size, dtype=bool)
    for source in vocab.levels:
        for target in vocab.levels:
            if source != target and translation_task(source, target) in vocab.tasks:
                flags[vocab.task_token(translation_task(source, target))] = True
    return flags


def prompt(vocab: Vocabulary, task: str, tokens: np.ndarray) -> np.ndarray:
    """<task:NAME> + tokens + <eos> as int64[T]: the input of a task (e.g. translate one modality's SID)."""
    return np.concatenate([[vocab.task_token(task)], tokens, [vocab.token("<eos>")]]).astype(np.int64)


def task_prompt(vocab: Vocabulary, task: str, source: np.ndarray) -> np.ndarray:
    """<bos> <task:NAME> source <eos>: what the model continues with the task's answer."""
    return np.concatenate([[vocab.token("<bos>")], prompt(vocab, task, source)]).astype(np.int64)


def token_modalities(vocab: Vocabulary, tokens: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """Per-token modality index (vocabulary order; -1 for specials, task prompts, user tokens and padding)."""
    ids = vocab.modality_ids()
    if isinstance(tokens, torch.Tensor):
        return torch.from_numpy(ids).to(tokens.device)[tokens]
    return ids[np.asarray(tokens)]


@dataclass
class SingleSidLayout(OneTarget):
    """TIGER: [user bucket] + the codes of the `max_history` most recent items, then <eos>; target = item codes."""

    vocab: Vocabulary
    item_tokens: np.ndarray
    modality_tokens: dict[str, np.ndarray]
    max_history: int
    user_token: bool = False

    @classmethod
    def build(cls, codes: dict[str, ModalityCodes], vocab: Vocabulary, cfg: ModelConfig,
              max_history: int) -> SingleSidLayout:
        if len(vocab.levels) != 1:
            raise MmgrError(f"the single layout reads one modality's codes, got {', '.join(vocab.levels)}; use "
                            "model.layout=late-fusion for several")
        tokens = item_code_tokens(codes, vocab)
        return cls(vocab, next(iter(tokens.values())), tokens, max_history, vocab.user_buckets > 0)

    def encoder_tokens(self, user_id: str, history: np.ndarray) -> np.ndarray:
        tokens = history_item_tokens(self.item_tokens, user_id, history, self.max_history)
        return with_user_and_eos(self.vocab, user_id, tokens, self.user_token)


LAYOUTS.register("single")(LayoutKind(SingleSidLayout.build))


def pad_batch(rows: list[np.ndarray], pad: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """input_ids and attention_mask (B, T_max) for ragged token rows, padded to the batch's real length (the mask
    covers each row's length: a `pad` written inside a row, such as a hidden slot of an item, is attended)."""
    lengths = np.array([len(r) for r in rows])
    ids = np.full((len(rows), lengths.max()), pad, dtype=np.int64)
    for i, row in enumerate(rows):
        ids[i, :len(row)] = row
    mask = np.arange(ids.shape[1])[None] < lengths[:, None]          # a row's own tokens, a <pad> inside one too
    return torch.from_numpy(ids), torch.from_numpy(mask.astype(np.int64))
