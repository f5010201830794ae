"""The training loop: exact resume after a kill, safetensors checkpoints, early stopping, best-epoch weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import T5ForConditionalGeneration

import mmgr.training.loop as loop
from mmgr.errors import MmgrError
from mmgr.models.seq2seq import build_t5
from mmgr.training.data import EncodedExamples, epoch_order, length_batches
from mmgr.weights import load_weights
from tests.helpers import TOY_MODEL, VOCAB, scored, toy_examples, train, weights


def test_batches_are_length_bucketed_and_epoch_orders_reproducible():
    examples = toy_examples()
    batches = length_batches(examples, 16, seed=1, epoch=0)
    spans = [np.ptp([len(examples.inputs[i]) for i in b]) for b in batches]
    assert max(spans) <= 2 and sorted(np.concatenate(batches).tolist()) == list(range(96))
    again = length_batches(examples, 16, seed=1, epoch=0)
    assert all(np.array_equal(a, b) for a, b in zip(batches, again, strict=True))
    assert epoch_order(6, 1, 0) == epoch_order(6, 1, 0) != epoch_order(6, 1, 1)


def test_equal_length_examples_are_mixed_across_batches_and_redrawn_each_epoch():
    """One user's consecutive windows (or one task's rows) of the same length do not fill a batch together."""
    n = 256
    inputs = [np.arange(5) for _ in range(n)]                       # every example has the same length
    examples = EncodedExamples(inputs, np.zeros((n, 2), dtype=np.int64), np.zeros(n, dtype=np.int64),
                               np.arange(n) // 32)                 # 8 "users" of 32 consecutive windows each
    first = length_batches(examples, 32, seed=3, epoch=0)
    users_per_batch = [len(set(examples.users[b].tolist())) for b in first]
    assert min(users_per_batch) >= 4                                # not one user per batch, as in input order
    second = length_batches(examples, 32, seed=3, epoch=1)
    assert {tuple(sorted(b.tolist())) for b in first} != {tuple(sorted(b.tolist())) for b in second}


def test_killed_run_resumes_to_the_same_weights(tmp_path, monkeypatch):
    reference, _ = train(tmp_path / "straight")
    calls = {"n": 0}
    real_collate = loop.collate

    def dying_collate(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 11:            # killed mid-epoch, 3 steps after the step-8 checkpoint
            raise KeyboardInterrupt
        return real_collate(*args, **kwargs)

    monkeypatch.setattr(loop, "collate", dying_collate)
    with pytest.raises(KeyboardInterrupt):
        train(tmp_path / "killed")
    monkeypatch.setattr(loop, "collate", real_collate)
    resumed, result = train(tmp_path / "killed")
    assert result.resumed_from_step == 8 and result.steps == 18
    for key, value in weights(reference).items():
        torch.testing.assert_close(weights(resumed)[key], value, rtol=0, atol=0)


def test_best_epoch_weights_are_kept_and_early_stopping_stops(tmp_path):
    model, result = train(tmp_path, validate=scored(0.1, 0.3, 0.2, 0.25, 0.1, 0.1), epochs=6, patience=2)
    assert result.best_epoch == 1 and result.best_score == 0.3
    assert result.epochs_run == 4                       # epochs 2 and 3 did not improve: stop
    saved, info = load_weights(tmp_path / loop.BEST)
    assert info["valid_ndcg@10"] == 0.3 and info["epoch"] == 1
    assert (tmp_path / "checkpoints" / "next-item" / "last.safetensors").is_file()
    assert (tmp_path / "logs" / "next-item" / "csv" / "version_0" / "metrics.csv").is_file()


def test_monitoring_the_validation_loss_keeps_its_lowest_and_stops_on_it(tmp_path):
    losses = [2.0, 1.5, 1.7, 1.6, 1.8]

    def validate(model):                                        # NDCG@10 rises throughout: only the loss decides
        return {"ndcg@10": 0.1 * (6 - len(losses)), "loss": losses.pop(0)}

    _, result = train(tmp_path, validate=validate, epochs=6, patience=2, monitor="loss")
    assert result.best_epoch == 1 and result.best_score == 1.5 and result.epochs_run == 4
    assert [h["valid_loss"] for h in result.history] == [2.0, 1.5, 1.7, 1.6]
    assert load_weights(tmp_path / loop.BEST)[1]["valid_loss"] == 1.5


def test_a_monitor_the_validation_does_not_give_is_named(tmp_path):
    with pytest.raises(MmgrError, match="training.monitor=loss.*gives ndcg@10 only"):
        train(tmp_path, validate=scored(0.1), epochs=1, monitor="loss")


def test_validations_during_warmup_do_not_count_toward_patience(tmp_path):
    """6 steps per epoch, 12 warmup steps: epoch 1's drop (at step 12, still warming up) is not held against the run,
    so it lives to improve at epoch 3; patience then stops it after two more validations without a gain."""
    _, result = train(tmp_path, validate=scored(0.3, 0.1, 0.2, 0.4, 0.1), epochs=8, patience=2, warmup_steps=12)
    assert result.best_epoch == 3 and result.best_score == 0.4 and result.epochs_run == 6


def test_loss_goes_down(tmp_path):
    model, result = train(tmp_path, epochs=8)
    examples = toy_examples()
    model.eval()
    from mmgr.training.data import collate

    with torch.no_grad():
        trained = model(**collate(examples, np.arange(96))).loss.item()
        fresh = build_t5(TOY_MODEL, VOCAB, seed=0).eval()(**collate(examples, np.arange(96))).loss.item()
    assert trained < fresh * 0.8


def test_checkpoint_of_another_setup_is_not_resumed(tmp_path):
    train(tmp_path, epochs=1)
    _, same = train(tmp_path, epochs=1, patience=3)     # same schedule (patience may change): continues
    assert same.resumed_from_step == 6
    _, other = train(tmp_path, epochs=1, lr=1e-2)        # other optimisation settings: start afresh
    assert other.resumed_from_step == 0


def test_an_unreadable_checkpoint_is_trained_over_not_a_crash(tmp_path):
    train(tmp_path, epochs=1)
    for last in tmp_path.glob("**/checkpoints/*/last.safetensors"):
        last.write_bytes(b"not a checkpoint")                # e.g. a copy cut short outside mmgr
    _, fresh = train(tmp_path, epochs=1)
    assert fresh.resumed_from_step == 0


def test_a_changed_budget_is_refused_instead_of_silently_rescheduled(tmp_path):
    train(tmp_path, epochs=1)                            # cosine schedule over 6 steps
    for change in ({"epochs": 2}, {"max_steps": 4}):
        with pytest.raises(MmgrError, match="schedule of 6 steps.*now give (12|4)"):
            train(tmp_path, **change)
    _, again = train(tmp_path, epochs=1)                 # the original budget still resumes
    assert again.resumed_from_step == 6


def test_validation_decodes_the_plain_model_outside_autocast(tmp_path):
    """Validation must see what `mmgr evaluate` sees: the plain T5 (so the fast T5 decoder runs) in full precision,
    not the Fabric wrapper whose forward runs under bf16 autocast."""
    seen = []

    def validate(model):
        seen.append((type(model), torch.is_autocast_enabled("cpu")))
        return {"ndcg@10": 0.0}

    train(tmp_path, validate=validate, epochs=1, precision="bf16-mixed")
    assert seen == [(T5ForConditionalGeneration, False)]


def test_a_budget_ending_mid_epoch_validates_the_final_weights(tmp_path):
    _, result = train(tmp_path, validate=scored(0.1, 0.4), max_steps=8)       # 6 batches per epoch
    assert [h["step"] for h in result.history] == [6, 8]
    assert result.best_score == 0.4 and load_weights(tmp_path / loop.BEST)[1]["valid_ndcg@10"] == 0.4


def test_step_validation_records_a_time_to_quality_curve(tmp_path):
    _, result = train(tmp_path, validate=scored(0.5), epochs=2, eval_every_steps=4, patience=100)
    assert [h["step"] for h in result.history] == [4, 6, 8, 12]        # every 4 steps and at each epoch end (6/12)
    seconds = [h["train_seconds"] for h in result.history]
    assert seconds == sorted(seconds) and seconds[0] > 0
    assert [h["samples"] for h in result.history] == [64, 96, 128, 192]
    assert all(h["target_tokens"] == 2 * h["samples"] for h in result.history)   # two target tokens per example
