"""TriAlignGR's triangular multitask training (TMT, arXiv 2605.05249), registered as `training.objective: tmt`.

One causal model, one autoregressive cross-entropy over eight tasks by default: history -> next SID (the causal
backbone's next-item windows, a target at every item position) and the text tasks of `training.tmt.tasks`
(`mmgr.objectives.tasks`): SID -> title, title -> SID, interests -> SID, SID -> interests, history -> next title,
VisDesc -> SID, VisDesc -> title. Each training sample picks its task uniformly at random, then an example of that
task uniformly; batches mix tasks (grouped by length, padded to their real length). An epoch is
`tasks x next-item windows` samples, so the next-item windows are seen about once per epoch. A task that no item
can fill (no images -> no visual descriptions) drops out with a note. Validation and evaluation rank items by the
history -> next SID task, through the same constrained search as every causal run.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, get_args

import numpy as np

from mmgr.config import TextTaskName, TMTConfig
from mmgr.objectives.base import OBJECTIVES, Batching
from mmgr.objectives.tasks import Task, side_tokens, task_sequence
from mmgr.tokenizers.words import WordCodec
from mmgr.training.data import EncodedExamples, causal_examples, collate, prefix_examples
from mmgr.training.loop import TrainData

if TYPE_CHECKING:
    from mmgr.inference.prepared import Prepared

NEXT_SID = "history->sid"
GROUP_BATCHES = 32          # batches sorted by length together (mixed tasks, little padding)
log = logging.getLogger(__name__)


class TMTObjective:
    min_modalities = 1
    backbones = ("causal", "llm")
    settings = "tmt"

    def tasks(self, modalities: list[str]) -> tuple[str, ...]:
        return get_args(TextTaskName)        # every text task's prompt: one vocabulary whatever subset is trained

    def text_fields(self, settings: TMTConfig) -> tuple[str, ...]:
        return tuple(dict.fromkeys(f for name in settings.tasks for f in Task.parse(name).fields))

    def train_data(self, prep: Prepared, batching: Batching, settings: TMTConfig) -> tuple[TrainData, int]:
        pools = task_pools(prep, batching.max_history, settings)
        examples = EncodedExamples([x for p in pools.values() for x in p.inputs],
                                   [y for p in pools.values() for y in p.labels],
                                   np.concatenate([p.targets for p in pools.values()]),
                                   np.concatenate([p.users for p in pools.values()]))
        sizes = np.array([len(p) for p in pools.values()])
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        lengths = np.fromiter((len(x) for x in examples.inputs), dtype=np.int64, count=len(examples))
        per_epoch = len(pools) * len(pools[NEXT_SID])
        batch_size, seed = batching.batch_size, batching.seed

        def batches(epoch: int) -> list[np.ndarray]:
            rng = np.random.default_rng([seed, epoch])
            task = rng.integers(len(sizes), size=per_epoch)                       # uniform task sampling
            index = starts[task] + (rng.random(per_epoch) * sizes[task]).astype(np.int64)
            return length_grouped(index, lengths, batch_size, rng)

        log.info("tmt: %s samples per epoch over %s", per_epoch,
                 ", ".join(f"{name} ({len(pool)})" for name, pool in pools.items()))
        return TrainData(batches, lambda index: collate(examples, index)), per_epoch


def task_pools(prep: Prepared, max_history: int, settings: TMTConfig) -> dict[str, EncodedExamples]:
    """Every task's examples as causal (input_ids, labels) pairs, the next-item windows first."""
    layout, vocab = prep.layout, prep.layout.vocab
    codec = WordCodec(vocab, settings.max_text_tokens)
    texts = {field: encoded_texts(codec, values) for field, values in prep.texts.items()}
    pools = {NEXT_SID: causal_examples(layout, prep.user_ids, prep.split.train, max_history)}
    dropped = []
    for name in settings.tasks:
        task = Task.parse(name)
        pool = (history_pool if task.source == "history" else item_pool)(prep, task, texts, max_history)
        if len(pool):
            pools[name] = pool
        else:
            dropped.append(f"{name} (no item has {' and '.join(task.fields)})")
    if dropped:
        log.warning("note: tasks dropped: %s", "; ".join(dropped))
    return pools


def encoded_texts(codec: WordCodec, values: list[str | None]) -> list[np.ndarray | None]:
    present = [i for i, v in enumerate(values) if v]
    tokens: list[np.ndarray | None] = [None] * len(values)
    for i, row in zip(present, codec.encode([values[i] for i in present]), strict=True):
        tokens[i] = row
    return tokens


def item_pool(prep: Prepared, task: Task, texts: dict[str, list[np.ndarray | None]],
              max_history: int) -> EncodedExamples:
    """One example per item that has both sides of `task`."""
    inputs, labels, items = [], [], []
    for item in range(len(prep.layout.item_tokens)):
        source = side_tokens(prep.layout, texts, task.source, item)
        target = side_tokens(prep.layout, texts, task.target, item)
        if source is None or target is None:
            continue
        x, y = task_sequence(prep.layout.vocab, task, source, target)
        inputs.append(x)
        labels.append(y)
        items.append(item)
    return EncodedExamples(inputs, labels, np.asarray(items, dtype=np.int64), np.full(len(items), -1))


def history_pool(prep: Prepared, task: Task, texts: dict[str, list[np.ndarray | None]],
                 max_history: int) -> EncodedExamples:
    """One example per training position whose next item has the target text: the history's SIDs -> its text."""
    users, histories, targets = prefix_examples(prep.split.train, max_history)
    inputs, labels, kept = [], [], []
    for row, (user, history, item) in enumerate(zip(users.tolist(), histories, targets.tolist(), strict=True)):
        target = side_tokens(prep.layout, texts, task.target, item)
        if target is None:
            continue
        source = prep.layout.encoder_tokens(prep.user_ids[user], history)[:-1]        # without its <eos>
        x, y = task_sequence(prep.layout.vocab, task, source, target)
        inputs.append(x)
        labels.append(y)
        kept.append(row)
    return EncodedExamples(inputs, labels, targets[kept], users[kept])


def length_grouped(index: np.ndarray, lengths: np.ndarray, batch_size: int,
                   rng: np.random.Generator) -> list[np.ndarray]:
    """`index` cut into batches: each group of GROUP_BATCHES batches sorted by length, the batches shuffled."""
    batches = []
    for start in range(0, len(index), batch_size * GROUP_BATCHES):
        group = index[start:start + batch_size * GROUP_BATCHES]
        group = group[np.argsort(lengths[group], kind="stable")]
        batches += [group[i:i + batch_size] for i in range(0, len(group), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


OBJECTIVES.register("tmt")(TMTObjective())
