"""TriAlignGR's parts without training: the subword block of the vocabulary, every task template (round trip from
an item to its training sequence and back), uniform mixed-task batches, dropped tasks, and text generation that
can only write text tokens."""

from __future__ import annotations

import logging
from typing import get_args

import numpy as np
import pytest

from mmgr.config import TextTaskName, load_config
from mmgr.decoding.text import generate_text
from mmgr.engines.generative import check_backbone
from mmgr.engines.method import stage_data
from mmgr.errors import MmgrError
from mmgr.layouts.base import task_prompt
from mmgr.models.causal import build_causal
from mmgr.objectives.base import OBJECTIVES
from mmgr.objectives.tasks import Task, task_sequence
from mmgr.objectives.tmt import task_pools
from mmgr.tokenizers.codes import Vocabulary
from mmgr.tokenizers.words import WordCodec, used_words
from mmgr.training.data import IGNORE
from tests.helpers import item_texts, prepared

WORDS = "all-MiniLM-L6-v2"
TEXTS = ["Toy Story (1995)", "a blue poster with a cowboy", "likes animation, family movie nights; cartoons",
         "Schindler's List (1993)", "Spider-Man / Batman: 100% [uncut]"]


def vocabulary(words: tuple[int, ...] = ()) -> Vocabulary:
    return Vocabulary({"text": [4, 4]}, ("sid->title",), 0, words, WORDS if words else "")


def test_the_text_block_follows_the_codes_and_leaves_their_ids_alone():
    plain, with_words = vocabulary(), vocabulary(used_words(WORDS, TEXTS))
    assert with_words.encode("text", np.array([[3, 2]])).tolist() == plain.encode("text", np.array([[3, 2]])).tolist()
    assert with_words.word_offset == plain.size and with_words.size == plain.size + len(with_words.words)
    assert plain.to_json() == {"levels": {"text": [4, 4]}, "tasks": ["sid->title"], "user_buckets": 0, "size": 15}


def test_vocabulary_with_words_round_trips_through_its_file(tmp_path):
    vocab = vocabulary(used_words(WORDS, TEXTS))
    vocab.save(tmp_path / "vocabulary.json")
    assert Vocabulary.load(tmp_path / "vocabulary.json") == vocab
    assert Vocabulary.load(tmp_path / "vocabulary.json").digest() == vocab.digest() != vocabulary().digest()


def test_text_round_trips_and_unknown_pieces_become_unk():
    vocab = vocabulary(used_words(WORDS, TEXTS))
    codec = WordCodec(vocab, max_tokens=32)
    tokens = codec.encode(TEXTS)
    assert all(t.min() >= vocab.word_offset for t in tokens)
    assert [codec.decode(t) for t in tokens] == [t.lower() for t in TEXTS]    # MiniLM's WordPiece is uncased
    unseen = codec.encode(["zebra"])[0]
    assert unseen.tolist() == [vocab.token("<unk>")] * len(unseen)
    assert len(codec.encode(["word " * 100])[0]) == 32                         # bounded
    allowed = codec.allowed()
    assert allowed[vocab.word_offset:].all() and allowed[vocab.token("<eos>")]
    assert allowed.sum() == len(vocab.words) + 1                               # nothing else: no SID tokens


def test_a_vocabulary_without_words_refuses_a_codec():
    with pytest.raises(MmgrError, match="no text tokens"):
        WordCodec(vocabulary(), 8)


@pytest.mark.parametrize("name", get_args(TextTaskName))
def test_every_task_template_round_trips(name):
    """item -> training sequence: the prompt names the task and holds the source, the labels are exactly the
    target (+ <eos> for text), and the target decodes back to the item's SID or text."""
    prep, config = prepared("tmt")
    config.training.tmt.tasks = [name]
    texts = item_texts(config) | {"description": [f"plot of film {i}" for i in range(30)]}
    prep.texts = texts
    vocab = load_words(prep, texts)
    task, codec = Task.parse(name), WordCodec(vocab, 32)
    item, user_history = 5, np.array([1, 2, 3])
    sides = {"sid": prep.layout.item_tokens[item], "history": prep.layout.encoder_tokens("u0", user_history)[:-1],
             **{f: codec.encode([texts[f][item]])[0] for f in texts if texts[f][item]}}
    inputs, labels = task_sequence(vocab, task, sides[task.source], sides[task.target])
    head = task_prompt(vocab, name, sides[task.source])
    assert inputs[:len(head)].tolist() == head.tolist() and head[1] == vocab.task_token(name)
    assert head[2:-1].tolist() == sides[task.source].tolist() and head[-1] == vocab.token("<eos>")
    answer = labels[labels != IGNORE]
    assert (labels[:len(head)] == IGNORE).all() and inputs[len(head):].tolist() == answer.tolist()
    if task.writes_text:
        assert answer[-1] == vocab.token("<eos>") and codec.decode(answer) == texts[task.target][item].lower()
    else:
        assert answer.tolist() == prep.layout.item_tokens[item].tolist()


def load_words(prep, texts) -> Vocabulary:
    vocab = prep.layout.vocab
    words = used_words(WORDS, [t for values in texts.values() for t in values if t])
    return Vocabulary(vocab.levels, vocab.tasks, vocab.user_buckets, words, WORDS)


def test_unknown_task_names_are_refused():
    for bad in ("sid->sid", "image->sid", "title"):
        with pytest.raises(MmgrError, match="unknown task"):
            Task.parse(bad)


def test_batches_mix_tasks_sampled_uniformly():
    prep, config = prepared("tmt")
    data, per_epoch = stage_data(OBJECTIVES.get("tmt"), prep, config)
    vocab = prep.layout.vocab
    task_of = {vocab.task_token(t): t for t in vocab.tasks}
    seen = []
    for index in data.batches(0):
        ids = data.collate(index)["input_ids"]
        seen.append([task_of.get(int(row[1]), "history->sid") for row in ids])
    counts = {t: sum(row.count(t) for row in seen) for t in {t for row in seen for t in row}}
    assert sum(counts.values()) == per_epoch and len(counts) == 1 + len(config.training.tmt.tasks)
    assert min(counts.values()) > per_epoch / len(counts) / 2                     # about uniform
    assert max(len(set(row)) for row in seen) >= 3                                 # mixed-task batches
    assert [b.tolist() for b in data.batches(1)] != [b.tolist() for b in data.batches(0)]


def test_a_task_no_item_can_fill_drops_out_with_a_note(caplog):
    prep, config = prepared("tmt")
    prep.texts["visdesc"] = [None] * len(prep.texts["visdesc"])
    with caplog.at_level(logging.WARNING):
        pools = task_pools(prep, config.split.max_history, config.training.tmt)
    assert "visdesc->sid" not in pools and "visdesc->title" not in pools and "sid->title" in pools
    assert "visdesc->sid (no item has visdesc)" in caplog.text


def test_tmt_needs_the_causal_backbone():
    _, config = prepared("tmt")
    config.model.kind, config.training.objective = "t5", "tmt"
    with pytest.raises(MmgrError, match="tmt trains on model.kind=causal or llm"):
        check_backbone(config)


def test_generated_text_uses_only_allowed_tokens_and_stops_at_eos():
    vocab = vocabulary(used_words(WORDS, TEXTS))
    config = load_config(overrides=["model.d_model=16", "model.num_layers=1", "model.num_heads=2", "model.d_kv=8",
                                    "model.d_ff=32"])
    model = build_causal(config.model, vocab, seed=0)
    allowed = WordCodec(vocab, 8).allowed()
    prompts = [task_prompt(vocab, "sid->title", vocab.encode("text", np.array([[i, 3 - i]]))[0]) for i in range(3)]
    written = generate_text(model, prompts, allowed, vocab.token("<eos>"), vocab.token("<pad>"), max_new_tokens=6)
    assert len(written) == 3 and all(len(row) <= 6 for row in written)
    assert all(allowed[t] and t != vocab.token("<eos>") for row in written for t in row)
    only_eos = np.zeros(vocab.size, dtype=bool)              # an <eos>-only vocabulary ends every answer at once
    only_eos[vocab.token("<eos>")] = True
    assert generate_text(model, prompts, only_eos, vocab.token("<eos>"), 0, 6) == [[], [], []]
