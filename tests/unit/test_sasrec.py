"""SASRec-CE: shapes, padding invariance, weights round trip, learning a planted pattern through the run stages,
and resume after an interruption."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from safetensors import safe_open

import mmgr.engines.sasrec as sasrec_module
from mmgr.config import ModelConfig, load_config
from mmgr.data.importer import import_into_run
from mmgr.engines.base import train_run
from mmgr.engines.sasrec import evaluate_sasrec_run, train_sasrec_run
from mmgr.inference.sasrec import load_sasrec
from mmgr.models.sasrec import (
    SASRec,
    build_sasrec,
    collate_sequences,
    epoch_batches,
    heldout_loss,
    pad_left,
    rank_all_items,
)
from mmgr.rundir import RunDir
from mmgr.weights import load_state, load_weights, save_weights

N_ITEMS = 12
TINY = ["model.kind=sasrec", "model.d_model=32", "model.num_layers=1", "model.num_heads=2", "model.d_ff=64",
        "model.dropout=0.0", "training.batch_size=16", "training.lr=0.01", "training.warmup_steps=5",
        "training.precision=32-true", "training.accelerator=cpu", "training.eval_users=0",
        "training.patience=100", "split.max_history=6"]


def tiny_model(**kwargs) -> SASRec:
    torch.manual_seed(0)
    sizes = {"num_items": N_ITEMS, "max_history": 6, "d_model": 16, "num_layers": 2, "num_heads": 2, "d_ff": 32,
             "dropout": 0.0, **kwargs}
    return SASRec(**sizes).eval()


def write_csv(path: Path, rows: list[list]) -> None:
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows(rows)


@pytest.fixture(scope="module")
def cycle_data(tmp_path_factory) -> Path:
    """Users walk the item cycle i -> i+1 (mod N) from a random start: the next item is always predictable."""
    folder = tmp_path_factory.mktemp("cycle")
    rng = np.random.default_rng(0)
    rows = [["user_id", "item_id", "timestamp"]]
    for user in range(96):
        start, length = int(rng.integers(N_ITEMS)), int(rng.integers(5, 9))
        rows += [[f"u{user}", f"i{(start + t) % N_ITEMS}", t] for t in range(length)]
    write_csv(folder / "interactions.csv", rows)
    write_csv(folder / "items.csv", [["item_id", "title"]] + [[f"i{i}", f"item {i}"] for i in range(N_ITEMS)])
    return folder


def make_run(data: Path, out: Path, extra: list[str] = ()) -> tuple[RunDir, object]:
    config = load_config(overrides=["data.format=generic", f"data.path={data}", *TINY, *extra])
    run, _, _ = import_into_run(config, out)
    return run, config


def test_shapes_and_loss() -> None:
    model = tiny_model()
    input_ids = pad_left([np.array([1, 2, 3]), np.array([4, 5])])                           # (2, 3)
    assert input_ids.tolist() == [[1, 2, 3], [0, 4, 5]]
    assert model.hidden(input_ids).shape == (2, 3, 16)
    assert model(input_ids).shape == (2, N_ITEMS)
    labels = pad_left([np.array([2, 3, 4]), np.array([5, 6])])
    loss = model(input_ids, labels)
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert abs(loss.item() - np.log(N_ITEMS)) < 1.0                                          # near uniform at init


def test_padding_invariance() -> None:
    model = tiny_model()
    short = model(torch.tensor([[3, 7, 2]]))
    padded = model(torch.tensor([[0, 0, 3, 7, 2]]))
    batched = model(pad_left([np.array([3, 7, 2]), np.array([1, 2, 3, 4, 5, 6])]))
    torch.testing.assert_close(padded, short, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(batched[:1], short, atol=1e-5, rtol=1e-5)


def test_collate_and_epoch_batches_are_deterministic() -> None:
    sequences = [np.array([1, 2, 3]), np.array([4, 5, 6, 7]), np.array([8, 9])]
    batch = collate_sequences(sequences, np.array([0, 2]))
    assert batch["input_ids"].tolist() == [[1, 2], [0, 8]] and batch["labels"].tolist() == [[2, 3], [0, 9]]
    lengths = np.array([5, 1, 3, 2, 4, 6, 2])
    first, again = epoch_batches(lengths, 3, seed=1, epoch=0), epoch_batches(lengths, 3, seed=1, epoch=0)
    assert [b.tolist() for b in first] == [b.tolist() for b in again] and len(first) == 3
    assert sorted(np.concatenate(first).tolist()) == list(range(7))
    assert [b.tolist() for b in epoch_batches(lengths, 3, seed=1, epoch=1)] != [b.tolist() for b in first]


def test_weights_round_trip(tmp_path: Path) -> None:
    model = tiny_model()
    save_weights(tmp_path / "w.safetensors", model, {"model": "sasrec"})
    other = build_sasrec(ModelConfig(d_model=16, num_layers=2, num_heads=2, d_ff=32, dropout=0.0), N_ITEMS, 6, 1)
    tensors, info = load_weights(tmp_path / "w.safetensors")
    load_state(other, tensors)
    history = torch.tensor([[0, 5, 6, 7]])
    torch.testing.assert_close(other.eval()(history), model(history), atol=0, rtol=0)
    assert info == {"model": "sasrec"}


def test_learns_planted_cycle_and_evaluates(cycle_data: Path, tmp_path: Path) -> None:
    run, config = make_run(cycle_data, tmp_path / "run", ["training.epochs=8"])
    summary = train_run(run, config, progress=False)                          # dispatches on model.kind
    assert summary["epochs_run"] == 8 and summary["samples_per_second"] > 0
    assert "valid/ndcg@10" in (run.path / "logs" / "next-item" / "csv" / "version_0" / "metrics.csv").read_text()
    results = evaluate_sasrec_run(run, config, progress=False)
    assert results["test"]["hr@1"] > 0.9 and results["valid"]["hr@1"] > 0.9
    assert results["test"]["users"] == 96 and results["protocol"]["history_items_filtered"] is False
    assert json.loads((run.path / "results.json").read_text())["test"] == results["test"]
    table = pq.read_table(run.path / "per_user_test.parquet")
    assert table.num_rows == 96 and {"user_id", "target", "ranked", "ndcg@10"} <= set(table.column_names)
    assert {"train", "evaluate"} <= set(run.manifest()["stages"])
    model = load_sasrec(run, config, N_ITEMS)                                     # the item after 3 is 4
    items, _ = rank_all_items(model, [np.array([1, 2, 3])], top_k=3)
    assert items[0, 0] == 4
    losses = [h["valid_loss"] for h in summary["history"]]                        # from uniform to near certain
    assert losses[0] > 0.5 * np.log(N_ITEMS) and min(losses) < 0.1 * np.log(N_ITEMS), losses


def test_the_heldout_loss_is_the_cross_entropy_of_each_target_after_its_history() -> None:
    model = tiny_model().eval()
    histories, targets = [np.array([2, 3]), np.array([], dtype=np.int64), np.array([0, 4, 1])], np.array([4, 0, 2])
    with torch.no_grad():
        by_hand = [torch.log_softmax(model(pad_left([h + 1 if len(h) else np.array([0])])), -1)[0, t].item()
                   for h, t in zip(histories, targets, strict=True)]          # items shift by one (0 = padding)
    assert heldout_loss(model, histories, targets, batch_size=2) == pytest.approx(-np.mean(by_hand), rel=1e-5)


def final_weights(run: RunDir) -> dict[str, torch.Tensor]:
    with safe_open(str(run.path / "checkpoints/next-item/last.safetensors"), framework="pt") as handle:
        return {k: handle.get_tensor(k) for k in handle.keys() if k.startswith("model.")}  # noqa: SIM118


def test_resume_after_interruption_matches_uninterrupted(cycle_data: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    extra = ["training.epochs=3", "model.dropout=0.2", "training.checkpoint_every=1000"]
    whole, config = make_run(cycle_data, tmp_path / "whole", extra)
    train_sasrec_run(whole, config, progress=False)

    broken, config = make_run(cycle_data, tmp_path / "broken", extra)
    calls = {"n": 0}
    real_collate = sasrec_module.collate_sequences

    def interrupted(sequences, index):
        calls["n"] += 1
        if calls["n"] == 10:                                                  # inside the second epoch (6 per epoch)
            raise KeyboardInterrupt
        return real_collate(sequences, index)

    monkeypatch.setattr(sasrec_module, "collate_sequences", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_sasrec_run(broken, config, progress=False)
    monkeypatch.setattr(sasrec_module, "collate_sequences", real_collate)
    summary = train_sasrec_run(broken, config, progress=False)
    assert summary["resumed_from_step"] == 6
    expected, got = final_weights(whole), final_weights(broken)
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key
