"""TriAlignGR's known answers: in a world whose next item is fixed by the last one and whose items have distinct
titles, a causal model trained with TMT (history -> next SID, SID -> title, title -> SID) must rank the right next
item, write each item's title from its SID (`mmgr recommend --explain`) and find the item from its title, through
the same search and generation a user calls."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from typer.testing import CliRunner

from mmgr.cli.app import app
from mmgr.config import load_config
from mmgr.data.importer import import_into_run
from mmgr.decoding.causal import causal_beam_search
from mmgr.engines.base import evaluate_run, train_run
from mmgr.errors import MmgrError
from mmgr.inference.explain import explained_fields
from mmgr.inference.ranker import load_ranker
from mmgr.layouts.base import pad_batch, task_prompt
from mmgr.rundir import RunDir
from mmgr.tokenizers.words import WordCodec
from tests.helpers import N_ITEMS, SMALL_T5, write_codes, write_successor_world

COLOURS = ("red", "blue", "green", "yellow", "purple", "orange", "black", "white", "silver", "golden")
NOUNS = ("lamp", "chair", "mug", "watch", "boot", "kettle")
TMT = ["model.kind=causal", "model.layout=single", "model.modalities=[text]", "training.objective=tmt",
       "training.tmt.tasks=[sid->title,title->sid]", "training.max_steps=800", "training.epochs=1000",
       "training.eval_every=1000"]      # one validation, at the end: next-SID saturates long before the titles


def title(item: int) -> str:
    return f"{COLOURS[item % 10]} {NOUNS[item // 10]}"


@pytest.fixture(scope="module")
def tmt_run(tmp_path_factory) -> tuple[RunDir, dict]:
    folder = write_successor_world(tmp_path_factory.mktemp("titled"), [title(i) for i in range(N_ITEMS)])
    config = load_config(overrides=["data.format=generic", f"data.path={folder}", *SMALL_T5, *TMT])
    run, _, _ = import_into_run(config, tmp_path_factory.mktemp("tmt") / "run")
    write_codes(run)
    return run, train_run(run, run.config(), progress=False)


def test_tmt_learns_the_next_item_and_the_vocabulary_holds_the_title_words(tmt_run):
    run, summary = tmt_run
    results = evaluate_run(run, run.config(), progress=False)
    assert results["test"]["hr@10"] >= 0.95, summary["history"]
    assert summary["best_score"] == pytest.approx(results["valid"]["ndcg@10"], abs=1e-9)   # one decoding path
    vocab = json.loads((run.path / "vocabulary.json").read_text())
    assert vocab["word_model"] == "all-MiniLM-L6-v2" and len(vocab["words"]) == len(COLOURS) + len(NOUNS)
    assert "sid->title" in vocab["tasks"] and "visdesc->title" in vocab["tasks"]   # every task: one vocabulary


def test_explain_writes_each_items_title_from_its_sid(tmt_run):
    run, _ = tmt_run
    written = load_ranker(run, run.config()).explain(list(range(N_ITEMS)))
    exact = sum(row["title"] == title(i) for i, row in enumerate(written))
    assert exact >= 0.85 * N_ITEMS, written[:5]


def test_title_to_sid_finds_the_item(tmt_run):
    run, _ = tmt_run
    ranker = load_ranker(run, run.config())
    vocab = ranker.data.layout.vocab
    titles = WordCodec(vocab, 32).encode([title(i) for i in range(N_ITEMS)])
    ids, mask = pad_batch([task_prompt(vocab, "title->sid", t) for t in titles])
    items, _ = causal_beam_search(ranker.model, ids, mask, ranker.data.tries["item"], beam_size=5, top_k=1)
    assert (items[:, 0] == torch.arange(N_ITEMS)).float().mean() >= 0.9


def test_recommend_explain_from_the_cli(tmt_run, tmp_path):
    run, _ = tmt_run
    runner = CliRunner()
    shown = runner.invoke(app, ["recommend", str(run.path), "--user", "u0", "--k", "3", "--explain"],
                          env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    assert "model's title" in shown.output and any(noun in shown.output for noun in NOUNS)
    requests = tmp_path / "requests.jsonl"
    requests.write_text(json.dumps({"history": ["i00", "i01"], "k": 2}) + "\n")
    out = tmp_path / "recs.jsonl"
    batch = runner.invoke(app, ["recommend", str(run.path), "--input", str(requests), "--output", str(out),
                                "--explain", "--no-progress"])
    assert batch.exit_code == 0, batch.output
    rows = json.loads(out.read_text())["items"]
    assert len(rows) == 2 and all(set(row["explanation"]) == {"title"} for row in rows)
    assert all(row["explanation"]["title"].split()[-1] in NOUNS for row in rows)


def test_runs_without_sid_to_text_tasks_refuse_to_explain(tmt_run):
    run, _ = tmt_run
    ranker = load_ranker(run, run.config())
    without = dataclasses.replace(ranker, explains=())        # what a next-item (or title->sid only) run loads
    with pytest.raises(MmgrError, match="cannot explain items"):
        without.explain([0])
    vocab = ranker.data.layout.vocab                            # holds every text task's prompt
    assert explained_fields(load_config(overrides=TMT), vocab) == ("title",)
    assert explained_fields(load_config(overrides=["training.tmt.tasks=[title->sid]"]), vocab) == ()
    sids_only = dataclasses.replace(vocab, tasks=())           # a next-item run's vocabulary: no task prompts
    assert explained_fields(load_config(overrides=["training.objective=next-item"]), sids_only) == ()


def test_post_recommend_explains_on_request(tmt_run):
    """The HTTP server adds the model's text per item when a request asks, and only then."""
    import httpx

    from mmgr.serving.launch import start_server

    run, _ = tmt_run
    process, url = start_server(run.path, (), None)
    try:
        history = {"history": ["i01", "i02"], "k": 3}
        plain = httpx.post(f"{url}/recommend", json=history).json()["items"]
        explained = httpx.post(f"{url}/recommend", json={**history, "explain": True}).json()["items"]
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert all("explanation" not in row for row in plain)
    assert [row["item_id"] for row in explained] == [row["item_id"] for row in plain]
    ranker = load_ranker(run, run.config())
    index = {item: row for row, item in enumerate(ranker.data.dataset.items["item_id"].to_pylist())}
    expected = ranker.explain([index[row["item_id"]] for row in explained])
    assert [row["explanation"] for row in explained] == expected
