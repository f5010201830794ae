"""Known answers for the methods whose per-modality lists are fused: in a world whose next item is fixed by the last
one, SynGR (three views of bimodal histories; fine-tuning from a pretrained run), SynGR as released (MQL4GRec's
sequence tasks and SynGR's) and MQL4GRec (six tasks on unimodal histories) must rank the right item first, on the T5
and the item-level causal backbones; a fused run serves and measures its lists through its own decoding path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmgr.engines.base import evaluate_run
from mmgr.errors import MmgrError
from mmgr.inference.prepared import load_prepared
from mmgr.rundir import RunDir
from mmgr.training.data import causal_windows
from tests.helpers import N_ITEMS, trained_run, write_successor_world


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    return write_successor_world(tmp_path_factory.mktemp("successor"), [f"item {i}" for i in range(N_ITEMS)])


SYNGR = ["model.layout=bimodal", "model.modalities=[text,image]", "training.objective=syngr"]


@pytest.fixture(scope="module")
def syngr_run(world: Path, tmp_path_factory) -> tuple[RunDir, dict]:
    return trained_run(world, tmp_path_factory.mktemp("syngr") / "run", [*SYNGR, "training.epochs=12"])


def test_syngr_learns_the_fixed_successor_from_fused_text_and_image_searches(syngr_run) -> None:
    run, summary = syngr_run
    vocab = json.loads((run.path / "vocabulary.json").read_text())
    assert vocab["tasks"] == ["next:text", "next:image"]
    assert summary["train_examples"] == 2 * sum(len(s) - 1 for s in load_prepared(run, run.config()).split.train)
    results = evaluate_run(run, run.config(), progress=False)
    assert results["test"]["hr@10"] >= 0.95 and results["test"]["hr@1"] >= 0.8
    assert summary["best_score"] == pytest.approx(results["valid"]["ndcg@10"], abs=1e-9)  # one decoding path
    losses = [h["valid_loss"] for h in summary["history"]]           # both modalities' held-out SIDs
    assert min(losses) < 0.25 * losses[0], losses


def test_syngr_on_the_item_level_backbone_learns_the_fixed_successor(world: Path, tmp_path: Path) -> None:
    run, summary = trained_run(world, tmp_path / "run", [*SYNGR, "model.kind=item-causal", "training.epochs=12"])
    config = run.config()
    windows = len(list(causal_windows(load_prepared(run, config).split.train, config.split.max_history)))
    assert summary["train_examples"] == 2 * windows                         # one window per sequence and task
    results = evaluate_run(run, config, progress=False)
    assert results["test"]["hr@10"] >= 0.95 and results["test"]["hr@1"] >= 0.8, (results["test"], summary["history"])
    assert summary["best_score"] == pytest.approx(results["valid"]["ndcg@10"], abs=1e-9)  # one decoding path


@pytest.mark.parametrize("backbone", [["model.kind=t5"], ["model.kind=item-causal", "model.user_buckets=0"]],
                         ids=["t5", "item-causal"])
def test_mql4grec_learns_the_fixed_successor_from_unimodal_histories_and_fused_lists(world: Path, tmp_path: Path,
                                                                                   backbone: list[str]) -> None:
    run, summary = trained_run(world, tmp_path / "run", ["model.layout=unimodal", "model.modalities=[text,image]",
                                                         "training.objective=mql4grec", "training.epochs=12",
                                                         *backbone])
    vocab = json.loads((run.path / "vocabulary.json").read_text())
    assert vocab["tasks"] == ["seq:text->text", "seq:image->image", "seq:text->image", "seq:image->text",
                              "text->image", "image->text"]
    config = run.config()
    train = load_prepared(run, config).split.train
    windows = len(list(causal_windows(train, config.split.max_history)))
    per_task = windows if config.model.kind == "item-causal" else sum(len(s) - 1 for s in train)
    assert summary["train_examples"] == 4 * per_task + 2 * N_ITEMS           # four sequence tasks, two translations
    results = evaluate_run(run, config, progress=False)
    assert results["test"]["hr@10"] >= 0.95 and results["test"]["hr@1"] >= 0.8, (results["test"], summary["history"])
    assert summary["best_score"] == pytest.approx(results["valid"]["ndcg@10"], abs=1e-9)  # one decoding path


def test_syngr_as_released_learns_the_fixed_successor_and_decodes_from_one_modality(world: Path,
                                                                                     tmp_path: Path) -> None:
    run, summary = trained_run(world, tmp_path / "run", ["model.kind=item-causal", "model.layout=unimodal-wide",
                                                         "model.modalities=[text,image]", "model.user_buckets=0",
                                                         "training.objective=syngr-released", "training.epochs=12"])
    vocab = json.loads((run.path / "vocabulary.json").read_text())
    assert vocab["tasks"] == ["seq:text->text", "seq:image->image", "seq:text->image", "seq:image->text",
                              "next:text", "next:image"]
    config = run.config()
    windows = len(list(causal_windows(load_prepared(run, config).split.train, config.split.max_history)))
    assert summary["train_examples"] == 6 * windows                      # four sequence tasks, SynGR's two
    results = evaluate_run(run, config, progress=False)
    assert results["test"]["hr@10"] >= 0.95 and results["test"]["hr@1"] >= 0.8, (results["test"], summary["history"])
    assert summary["best_score"] == pytest.approx(results["valid"]["ndcg@10"], abs=1e-9)  # one decoding path


def test_a_fused_run_serves_batched_requests_as_alone(syngr_run) -> None:
    """Serving a run whose lists are fused (two decoding targets): requests of one k share a search, each answered
    as it is alone."""
    from mmgr.inference.ranker import load_ranker
    from mmgr.serving.service import Recommender, Request

    run, _ = syngr_run
    recommender = Recommender(load_ranker(run, run.config()))
    requests = [Request([recommender.item_ids[i]], k=3) for i in range(4)] + \
        [Request(recommender.item_ids[5:7], k=5, exclude_seen=False)]
    alone = [recommender.recommend([request])[0] for request in requests]
    together = recommender.recommend(requests)
    assert all(isinstance(rows, list) and rows for rows in together), together
    assert [[r["item_id"] for r in rows] for rows in together] == [[r["item_id"] for r in rows] for rows in alone]
    assert [len(rows) for rows in together] == [3, 3, 3, 3, 5]


def test_finetuning_starts_from_a_pretrained_run(world: Path, tmp_path: Path, syngr_run) -> None:
    pretrained, _ = syngr_run
    run, _ = trained_run(world, tmp_path / "fine", [*SYNGR, f"training.init_from={pretrained.path}",
                                                    "training.max_steps=1", "training.lr=1e-7"])
    assert evaluate_run(run, run.config(), progress=False)["test"]["hr@10"] >= 0.95   # one tiny step: inherited
    scratch, _ = trained_run(world, tmp_path / "scratch", [*SYNGR, "training.max_steps=1", "training.lr=1e-7"])
    assert evaluate_run(scratch, scratch.config(), progress=False)["test"]["hr@10"] < 0.5
    with pytest.raises(MmgrError, match="another vocabulary"):
        trained_run(world, tmp_path / "other", ["model.layout=single", "model.modalities=[text]",
                                                f"training.init_from={pretrained.path}"])


def test_a_fused_runs_lists_are_measured_alone_by_its_own_decoding_path(syngr_run) -> None:
    """`analysis/lists.json` decodes each list as the run's evaluation does: their fusion is the run's test result,
    and in the fixed-successor world each list alone finds the next item too."""
    from mmgr.evaluation.modality import LISTS, read_measured
    from mmgr.report.lists import record_lists

    run, _ = syngr_run
    results = evaluate_run(run, run.config(), progress=False)
    assert record_lists(run.path) == run.path / LISTS
    lists = read_measured(run.path, LISTS)
    assert lists["rows"] == results["test"]["users"] and set(lists["alone"]) == {"text", "image"}
    assert {k: lists["fused"][k] for k in ("hr@10", "ndcg@10", "hr@1")} == \
        {k: results["test"][k] for k in ("hr@10", "ndcg@10", "hr@1")}
    assert all(alone["hr@10"] >= 0.9 for alone in lists["alone"].values()), lists["alone"]
    assert lists["any_list_hr@10"] >= lists["fused"]["hr@10"] and 0 < lists["in_every_list"] <= 1
