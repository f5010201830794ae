"""MQL4GRec's six tasks, example by example, against hand-written token rows; the switches drop their tasks."""

from __future__ import annotations

import numpy as np
import pytest

from mmgr.objectives.multitask import multitask_examples
from tests.helpers import N, prepared


def test_every_task_writes_its_prompt_the_sources_codes_and_the_targets_sid():
    prep, config = prepared("mql4grec")
    layout, vocab = prep.layout, prep.layout.vocab
    examples = multitask_examples(prep, config.split.max_history, config.training.multitask)
    prefixes = sum(len(s) - 1 for s in prep.split.train)
    both = int((~prep.codes["image"].missing).sum())
    assert len(examples) == 4 * prefixes + 2 * both
    eos = vocab.token("<eos>")
    user, sequence = 0, prep.split.train[0]
    history, target = sequence[:1], int(sequence[1])                      # the first example of the first user
    text, image = layout.modality_tokens["text"], layout.modality_tokens["image"]
    expected = {("text", "text"): (text, text), ("text", "image"): (text, image),
                ("image", "text"): (image, text), ("image", "image"): (image, image)}
    for order, ((source, goal), (written, asked)) in enumerate(expected.items()):
        row = order * prefixes                                              # task blocks follow each other
        assert examples.inputs[row].tolist() == [vocab.task_token(f"seq:{source}->{goal}"),
                                                 *written[history].reshape(-1).tolist(), eos]
        assert examples.labels[row].tolist() == asked[target].tolist() and examples.targets[row] == target
        assert examples.users[row] == user
    first_item = int(np.flatnonzero(~prep.codes["image"].missing)[0])
    row = 4 * prefixes                                                      # the translations come last
    assert examples.inputs[row].tolist() == [vocab.task_token("text->image"), *text[first_item].tolist(), eos]
    assert examples.labels[row].tolist() == image[first_item].tolist()


@pytest.mark.parametrize(("switches", "tasks"), [
    ({"cross_modal": False}, 2 + 2), ({"translation": False}, 4), ({"cross_modal": False, "translation": False}, 2)])
def test_switches_drop_their_tasks(switches, tasks):
    prep, config = prepared("mql4grec")
    config.training.multitask = config.training.multitask.model_copy(update=switches)
    examples = multitask_examples(prep, config.split.max_history, config.training.multitask)
    prefixes = sum(len(s) - 1 for s in prep.split.train)
    sequence_tasks = 2 if switches.get("cross_modal") is False else 4
    translations = 0 if switches.get("translation") is False else 2 * int((~prep.codes["image"].missing).sum())
    assert len(examples) == sequence_tasks * prefixes + translations and tasks >= sequence_tasks
    assert len(prep.codes["text"].codes) == N
