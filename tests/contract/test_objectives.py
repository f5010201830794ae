"""Every registered training objective (main and alignment) passes the same checks: deterministic batches, padded
labels that are never trained on, declared task prompts, and a finite loss whose gradient reaches the model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmgr.config import load_config
from mmgr.data.splits import leave_one_out
from mmgr.decoding.trie import PrefixTrie
from mmgr.layouts import LAYOUTS
from mmgr.tokenizers.codes import ModalityCodes, Vocabulary
from mmgr.tokenizers.words import used_words
from mmgr.training.backbones import BACKBONES
from mmgr.training.data import IGNORE
from mmgr.training.method import Prepared
from mmgr.training.objectives import ALIGNMENTS, OBJECTIVES, Objective
from mmgr.training.tasks import Task

N = 30


LAYOUT_OF = {"syngr": "bimodal", "mql4grec": "unimodal"}   # layouts objectives need (others: late fusion)


def registered(name: str) -> Objective:
    return (ALIGNMENTS if name in ALIGNMENTS.names() else OBJECTIVES).get(name)


def item_texts(config) -> dict[str, list[str | None]]:
    """Titles, interest tags and visual descriptions for the text objectives (some items lack some)."""
    fields = {f for name in config.training.tmt.tasks for f in Task.parse(name).fields}
    values = {"title": [f"movie number {i}" for i in range(N)],
              "interests": [f"likes {'comedy' if i % 2 else 'drama'}; era {i % 3}" if i % 4 else None
                            for i in range(N)],
              "visdesc": [f"a poster in {'red' if i % 3 else 'blue'}" if i >= 3 else None for i in range(N)],
              "description": [None] * N}
    return {f: values[f] for f in fields}


def prepared(objective: str) -> tuple[Prepared, object]:
    layout_name = LAYOUT_OF.get(objective, "late-fusion")
    config = load_config(overrides=[f"model.layout={layout_name}", "model.modalities=[text,image]",
                                    f"model.kind={(registered(objective).backbones or ('t5',))[0]}",
                                    "model.switch_tokens=true", "model.d_model=16", "model.num_layers=1",
                                    "model.num_decoder_layers=1", "model.num_heads=2", "model.d_kv=8",
                                    "model.d_ff=32", "model.user_buckets=0", "training.batch_size=8",
                                    "split.max_history=4"])
    rng = np.random.default_rng(0)
    grid = np.array([(a, b) for a in range(6) for b in range(6)])
    text = ModalityCodes("text", grid[rng.permutation(36)[:N]], [6, 6], np.zeros(N, dtype=bool))
    image = ModalityCodes("image", np.stack([np.arange(N) % 5, np.arange(N) // 5, np.zeros(N, dtype=int)], 1),
                          [5, 6, 1], np.arange(N) < 3)                      # 3-level image SIDs, 3 items lack one
    codes = {"text": text, "image": image}
    tasks = LAYOUTS.get(layout_name).tasks(["text", "image"]) + registered(objective).tasks(["text", "image"])
    texts = item_texts(config) if registered(objective).text_fields(config) else {}
    words = used_words(config.model.words, [t for values in texts.values() for t in values if t])
    vocab = Vocabulary({m: list(c.with_missing_reserved().sizes) for m, c in codes.items()}, tasks, 0, words,
                       config.model.words if words else "")
    layout = LAYOUTS.get(layout_name).build(codes, vocab, config.model, 4)
    sequences = [rng.integers(0, N, size=int(rng.integers(4, 9))) for _ in range(20)]
    prep = Prepared(None, [f"u{i}" for i in range(20)], leave_one_out(sequences, 4), codes, layout,
                    {name: PrefixTrie.build(torch.from_numpy(tokens), vocab_size=vocab.size)
                     for name, tokens in layout.targets.items()}, texts)
    return prep, config


@pytest.fixture(params=[*OBJECTIVES.names(), *ALIGNMENTS.names()])
def objective(request):
    return request.param


def test_batches_are_deterministic_and_cover_every_example(objective):
    prep, config = prepared(objective)
    data, count = registered(objective).train_data(prep, config)
    first = data.batches(0)
    assert [b.tolist() for b in first] == [b.tolist() for b in data.batches(0)] and count > 0
    rows = sum(len(data.collate(b)["labels"]) for b in first)
    assert rows in (count, count - count % 8, count - 1)                # every example (contrastive: full batches)


def test_labels_pad_with_ignore_and_inputs_use_declared_tasks(objective):
    prep, config = prepared(objective)
    data, _ = registered(objective).train_data(prep, config)
    vocab = prep.layout.vocab
    declared = LAYOUTS.get(LAYOUT_OF.get(objective, "late-fusion")).tasks(list(vocab.levels)) + \
        registered(objective).tasks(list(vocab.levels))
    task_tokens = {vocab.task_token(t) for t in declared}
    for index in data.batches(0):
        batch = data.collate(index)
        ids, mask = batch["input_ids"], batch["attention_mask"]
        assert ids.shape == mask.shape and ((ids != 0) == mask.bool()).all()   # 0 pads inputs only
        labels = batch["labels"]
        assert ((labels == IGNORE) | (labels > 0)).all()                    # -100 pads targets, 0 is never one
        assert labels.lt(vocab.size).all()
        used = set(ids[mask.bool()].tolist())
        assert not (used & {vocab.task_token(t) for t in vocab.tasks}) - task_tokens


def test_loss_is_finite_and_trains_the_model(objective):
    prep, config = prepared(objective)
    data, _ = registered(objective).train_data(prep, config)
    model = BACKBONES.get(config.model.kind).build(config.model, prep.layout.vocab, 0,
                                                   prep.layout.item_tokens.shape[1])
    loss = data.loss(model, data.collate(data.batches(0)[0]))
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert model.get_input_embeddings().weight.grad.abs().sum() > 0


def test_alignment_targets_are_the_other_modalitys_codes():
    prep, config = prepared("translate")
    data, count = ALIGNMENTS.get("translate").train_data(prep, config)
    assert count == 2 * (N - 3)                                            # items with an image, both directions
    vocab, tokens = prep.layout.vocab, prep.layout.modality_tokens
    batch = data.collate(np.arange(count))
    for row, labels in zip(batch["input_ids"].tolist(), batch["labels"].tolist(), strict=True):
        task = vocab.tasks[row[0] - vocab.task_token(vocab.tasks[0])]
        source, target = task.split("->")
        item = next(i for i in range(N) if tokens[source][i].tolist() == [t for t in row[1:] if t][:-1])
        assert [t for t in labels if t != IGNORE] == tokens[target][item].tolist()   # ragged: 2 vs 3 codes
