"""Progress where stderr is no terminal: plain lines at a bounded rate and one at the end, with rate and time left."""

from __future__ import annotations

import logging

from mmgr.progress import plain_progress


def test_plain_progress_logs_every_period_and_at_the_end(caplog):
    now = [0.0]
    caplog.set_level(logging.INFO, logger="mmgr")
    with plain_progress("training (next-item)", 100, every=10.0, clock=lambda: now[0]) as advance:
        for _ in range(30):                                # 30 steps at 1 s each: lines at 10 s, 20 s, 30 s
            now[0] += 1.0
            advance(1)
        advance(0, total=60)                               # the schedule was fitted shorter on the way
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 4
    assert lines[0] == "training (next-item): 10/100 (10%), 1.00/s, ~1m30s left"
    assert lines[-1] == "training (next-item): 30/60 (50%), 1.00/s, ~0m30s left in 0m30s"


def test_training_curves_reach_the_csv_file_while_training(tmp_path):
    from mmgr.training.loop import _loggers

    csv_logger = _loggers(tmp_path)[0]
    for step in (20, 40, 60):                              # the loop logs every 20 steps
        csv_logger.log_metrics({"train/loss": 1.0 / step}, step)
    rows = (tmp_path / "csv" / "version_0" / "metrics.csv").read_text().splitlines()
    assert len(rows) == 4 and rows[0].startswith(("step", "train/loss"))   # header + 3 rows, before finalize


def test_time_left_uses_this_invocations_step_time():
    """A run resumed after a slow (or paused) invocation estimates from its own steps, not the stage's mean."""
    from mmgr.training.loop import time_left

    state = {"schedule_steps": 100, "step": 60, "seen": {"seconds": 1000.0}}
    assert time_left(state) == ", ~11m06s of training left"                # 40 steps x 1000 s / 60
    assert time_left(state, since=(50, 900.0)) == ", ~6m40s of training left"   # 40 steps x 100 s / 10
    assert time_left(state, since=(50, 950.0)) == ", ~3m20s of training left"  # 40 steps x 50 s / 10
    assert time_left(state, since=(60, 1000.0)) == ""                       # no step of its own yet
    assert time_left({**state, "step": 100}) == ""
