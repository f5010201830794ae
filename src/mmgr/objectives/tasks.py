"""TriAlignGR's generation tasks over SIDs and text, in one place: how each task writes a causal training sequence
and the prompt that asks for its answer.

Every task is `SOURCE->TARGET` with SOURCE, TARGET one of `sid` (the item's SID tokens), `history` (a user's item
history, SID tokens), or an item text field: `title`, `description`, `interests` (MDIM's tags, joined by ", "),
`visdesc` (CMSA's image description, `mmgr encode --modality caption`). One sequence:

    <bos> <task:SOURCE->TARGET> source <eos> target [<eos> for text targets]

with the loss on the target only. The recommendation task (history -> next SID) is the causal backbone's own
next-item window (`mmgr.training.data.causal_examples`), a target at every item position; it needs no prompt.
SID targets are decoded with the trie-constrained beam search, text targets by ordinary generation restricted to
the text tokens (`mmgr.decoding.text`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from mmgr.encoders.text import as_text
from mmgr.errors import MmgrError
from mmgr.layouts.base import Layout, task_prompt
from mmgr.tokenizers.codes import Vocabulary
from mmgr.training.data import IGNORE

SID_SIDES = ("sid", "history")
TEXT_FIELDS = ("title", "description", "interests", "visdesc")
GENERATED_COLUMN = {"visdesc": "caption"}     # field -> the catalog column that `mmgr encode` adds for it


@dataclass(frozen=True)
class Task:
    name: str
    source: str      # sid | history | a text field
    target: str      # sid | a text field

    @classmethod
    def parse(cls, name: str) -> Task:
        source, _, target = name.partition("->")
        if source not in (*SID_SIDES, *TEXT_FIELDS) or target not in ("sid", *TEXT_FIELDS) or source == target:
            raise MmgrError(f"unknown task {name!r}: SOURCE->TARGET with SOURCE in sid, history, "
                            f"{', '.join(TEXT_FIELDS)} and TARGET in sid, {', '.join(TEXT_FIELDS)}")
        return cls(name, source, target)

    @property
    def fields(self) -> tuple[str, ...]:
        """The item text fields this task reads."""
        return tuple(side for side in (self.source, self.target) if side in TEXT_FIELDS)

    @property
    def writes_text(self) -> bool:
        return self.target in TEXT_FIELDS


def item_field_texts(items: pa.Table, fields: tuple[str, ...]) -> dict[str, list[str | None]]:
    """Per item, the text of each field (None when empty). `items` is the catalog with the generated columns
    (`caption`, `interests`) that `mmgr encode` wrote, where present."""
    texts = {}
    for field in fields:
        column = GENERATED_COLUMN.get(field, field)
        if column not in items.column_names:
            texts[field] = [None] * items.num_rows
            continue
        values = items[column].to_pylist()
        joined = [", ".join(v for v in value if v) if isinstance(value, list) else as_text(value) for value in values]
        texts[field] = [text or None for text in joined]
    return texts


def task_sequence(vocab: Vocabulary, task: Task, source: np.ndarray, target: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(input_ids, labels) int64[T] of one training example: labels are -100 on the prompt."""
    answer = np.concatenate([target, [vocab.token("<eos>")]]) if task.writes_text else target
    head = task_prompt(vocab, task.name, source)
    tokens = np.concatenate([head, answer]).astype(np.int64)
    return tokens, np.concatenate([np.full(len(head), IGNORE), answer]).astype(np.int64)


def side_tokens(layout: Layout, texts: dict[str, list[np.ndarray | None]], side: str, item: int) -> np.ndarray | None:
    """One item's tokens for a task side: its SID, or a text field's tokens (None when it has none)."""
    if side == "sid":
        return layout.item_tokens[item]
    tokens = texts[side][item]
    return tokens if tokens is not None and len(tokens) else None
