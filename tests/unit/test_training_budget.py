"""Training budgets and the compiled step: the warmup + cosine schedule, a wall-clock budget fitted on the run's own
step times (kept on resume, never exceeded), `graph: auto` by job size, and compiled training that follows the
eager loss curve."""

from __future__ import annotations

import math

import pytest
import torch

import mmgr.training.loop as loop
from mmgr.errors import MmgrError
from mmgr.training.budget import (
    COMPILE_MIN_SAMPLES,
    FIT_SHARE,
    TIMED_STEPS,
    WARM_STEPS,
    ClockBudget,
    Schedule,
    resolve_graph,
)
from tests.helpers import settings, toy_examples, train, weights


def test_schedule_warms_up_linearly_then_decays_to_zero_over_its_total():
    schedule = Schedule(warmup=4, total=14)
    assert [schedule.factor(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert schedule.factor(9) == pytest.approx(0.5) and schedule.factor(14) == 0.0
    schedule.total = 24                                  # fitted later: warmup unchanged, cosine stretched
    assert schedule.factor(3) == 1.0 and schedule.factor(14) == pytest.approx(0.5)


def test_clock_budget_fits_the_steps_left_from_timed_steps_after_the_untimed_ones():
    budget = ClockBudget(seconds=100.0, cap=1000)
    state = {"step": 0, "seen": {"seconds": 0.0}}
    fitted = None
    for step in range(WARM_STEPS + TIMED_STEPS):
        seconds = 5.0 if step < WARM_STEPS else 1.0     # slow first steps are not timed
        state["step"] += 1
        state["seen"]["seconds"] += seconds
        fitted = budget.observe(state, seconds)
        assert (fitted is None) == (step < WARM_STEPS + TIMED_STEPS - 1)
    spent = 5.0 * WARM_STEPS + TIMED_STEPS                # 50 s: 50 more steps of 1 s fit
    assert fitted == WARM_STEPS + TIMED_STEPS + int(100 - spent)
    assert state["budget_fitted"] and state["budget_steps_per_second"] == 1.0
    assert budget.observe(state, 1.0) is None           # fitted once
    assert not budget.spent(state)
    state["seen"]["seconds"] = 100.0
    assert budget.spent(state)
    assert ClockBudget(seconds=100.0, cap=40).observe(
        {"step": 30, "seen": {"seconds": 30.0}}, 1.0) is None   # needs its own timed steps first


def test_clock_budget_times_a_share_of_a_long_budget_so_slow_first_shapes_do_not_shorten_it():
    budget = ClockBudget(seconds=10_000.0, cap=100_000)
    state = {"step": 0, "seen": {"seconds": 0.0}}
    times = [10.0] * WARM_STEPS + [2.0] * 45 + [1.0] * 1000   # untimed, slow new shapes, then the run's speed
    fitted = None
    while fitted is None:
        seconds = times[state["step"]]
        state["step"] += 1
        state["seen"]["seconds"] += seconds
        fitted = budget.observe(state, seconds)
    assert state["seen"]["seconds"] == pytest.approx(FIT_SHARE * 10_000)   # not after TIMED_STEPS steps
    per_step = (90.0 + state["step"] - WARM_STEPS - 45) / (state["step"] - WARM_STEPS)
    assert fitted == state["step"] + int((10_000 - 500) / per_step)
    assert per_step < 1.12 and fitted > 8_900                # 25 steps after the untimed ones would fit ~5,000


def test_clock_budget_never_fits_more_than_the_step_and_epoch_budgets():
    budget = ClockBudget(seconds=1_000.0, cap=420)
    state = {"step": 0, "seen": {"seconds": 0.0}}
    fitted = None
    while fitted is None:
        state["step"] += 1
        state["seen"]["seconds"] += 1.0
        fitted = budget.observe(state, 1.0)
    assert state["step"] == 50 and fitted == 420    # fitted after 5% of the budget (1,000 steps fit): capped


class FakeClock:
    """Stands in for the loop's `time` module: every perf_counter() call advances 0.5 s (a step is timed 0.5 s)."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        self.now += 0.5
        return self.now


def test_wall_clock_budget_fits_the_schedule_stops_on_time_and_resumes_identically(tmp_path, monkeypatch):
    monkeypatch.setattr(loop, "time", FakeClock())
    budget = dict(epochs=30, budget_minutes=0.5, validate=None)   # 30 s at 0.5 s a step: 60 of the 180 steps
    straight, result = train(tmp_path / "straight", **budget)
    assert result.steps == 60 and result.schedule_steps == 60 and result.budget_steps_per_second == 2.0
    assert result.train_seconds == pytest.approx(30.0)

    calls = {"n": 0}
    real_collate = loop.collate

    def dying_collate(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 41:                             # killed after the fit, just after the step-40 checkpoint
            raise KeyboardInterrupt
        return real_collate(*args, **kwargs)

    monkeypatch.setattr(loop, "time", FakeClock())
    monkeypatch.setattr(loop, "collate", dying_collate)
    with pytest.raises(KeyboardInterrupt):
        train(tmp_path / "killed", **budget)
    monkeypatch.setattr(loop, "collate", real_collate)
    resumed, again = train(tmp_path / "killed", **budget)
    assert again.resumed_from_step == 40 and again.steps == 60 and again.schedule_steps == 60
    for key, value in weights(straight).items():
        torch.testing.assert_close(weights(resumed)[key], value, rtol=0, atol=0)
    with pytest.raises(MmgrError, match="budget_minutes=0.5, now 1.0"):
        train(tmp_path / "killed", epochs=30, budget_minutes=1.0, validate=None)


def test_budget_spent_before_the_fit_still_stops(tmp_path, monkeypatch):
    monkeypatch.setattr(loop, "time", FakeClock())
    _, result = train(tmp_path, epochs=30, budget_minutes=5 / 60, validate=None)   # 5 s = 10 steps, before any fit
    assert result.steps == 10 and result.budget_steps_per_second is None


def test_graph_auto_compiles_only_large_jobs_on_an_accelerator():
    assert resolve_graph("auto", COMPILE_MIN_SAMPLES - 1, on_cpu=False) == "eager"
    assert resolve_graph("auto", COMPILE_MIN_SAMPLES, on_cpu=False) == "compile"
    assert resolve_graph("auto", 10**9, on_cpu=True) == "eager"          # measured slower than eager on CPU
    assert resolve_graph("eager", 10**9, on_cpu=False) == "eager"
    assert resolve_graph("compile", 1, on_cpu=True) == "compile"
    assert settings().graph == "auto"


def recorded_losses(folder, graph: str) -> tuple[list[float], loop.FitResult]:
    """Per-step training losses of the tiny T5 (no dropout, fp32) trained eagerly or compiled."""
    from mmgr.models.seq2seq import build_t5
    from tests.helpers import TOY_MODEL, VOCAB

    losses: list[float] = []

    def loss(model, batch):
        value = loop.model_loss(model, batch)
        losses.append(float(value.detach()))
        return value

    model = build_t5(TOY_MODEL.model_copy(update={"dropout": 0.0}), VOCAB, seed=0)
    base = loop.bucketed_train_data(toy_examples(), 16, seed=1)
    data = loop.TrainData(base.batches, base.collate, loss)
    result = loop.fit(folder, model, data, settings(epochs=2, graph=graph), validate=None, weights_info={},
                      progress=False)
    return losses, result


def test_compiled_training_follows_the_eager_loss_curve(tmp_path):
    torch._dynamo.reset()
    eager, eager_result = recorded_losses(tmp_path / "eager", "eager")
    compiled, compiled_result = recorded_losses(tmp_path / "compiled", "compile")
    assert eager_result.graph == "eager" and compiled_result.graph == "compile"
    assert len(eager) == len(compiled) == 12 and all(math.isfinite(x) for x in compiled)
    assert eager[-1] < eager[0]
    torch.testing.assert_close(torch.tensor(compiled), torch.tensor(eager), rtol=2e-3, atol=2e-3)
