"""How long a training stage runs and how its learning rate moves: warmup + cosine fitted to a step budget, the
step count of a wall-clock budget measured on the run's own steps, and when to compile the training step.

A wall-clock budget (`training.budget_minutes`) is turned into a step count once: the first `WARM_STEPS` steps of
the invocation are not timed (allocator warm-up, the compiler's first graphs), the later ones are, until at least
`TIMED_STEPS` steps and `FIT_SHARE` of the budget have passed; the steps that fit in what is left of the budget at
their mean speed become the schedule's length (never more than the epoch and step budgets). Until then the cosine
runs over the epoch / step budget (so the learning rate is at its peak when the fit shortens it). The fitted count is
saved with the checkpoint, so a resumed run keeps its schedule. Timing a few dozen steps misjudges the speed: a
separate 40-step probe process measured 100 samples/s for a run that then went at 188, and 25 timed steps after the
first 5 of a Beauty run measured 2.0 steps/s for a run that went at 2.75 (new batch shapes are slow the first time
they are seen), so a 55-minute budget trained for 40. Training also stops once the budget's seconds are spent,
whatever the estimate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from mmgr.config import TrainingConfig

WARM_STEPS = 5        # untimed steps at the start of an invocation
TIMED_STEPS = 25      # at least this many timed steps size the budget
FIT_SHARE = 0.05      # ... and at least this share of the budget's seconds
COMPILE_MIN_SAMPLES = 2_000_000   # `graph: auto` compiles accelerator jobs of at least this many training samples


@dataclass
class Schedule:
    """Linear warmup then cosine decay to zero over `total` steps; `total` may be fitted once, after warmup
    started, by a wall-clock budget (the warmup part does not depend on it)."""

    warmup: int
    total: int

    def factor(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / max(1, self.warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))))


@dataclass
class ClockBudget:
    """Fits a stage's step count to `seconds` of training steps from this invocation's own step times."""

    seconds: float
    cap: int                                   # the epoch / step budget: never more steps than this
    timings: list[float] = field(default_factory=list)

    def observe(self, state: dict[str, Any], step_seconds: float) -> int | None:
        """Record one step's time; return the fitted total step count once enough steps are timed (else None).
        `state` is the loop state after the step (`step`, `seen.seconds`)."""
        if state.get("budget_fitted"):
            return None
        self.timings.append(step_seconds)
        timed = self.timings[WARM_STEPS:]
        if len(timed) < TIMED_STEPS or sum(self.timings) < FIT_SHARE * self.seconds:
            return None
        per_step = sum(timed) / len(timed)
        left = max(0.0, self.seconds - state["seen"]["seconds"])
        fitted = min(self.cap, state["step"] + max(1, int(left / per_step)))
        state.update(budget_fitted=True, budget_steps_per_second=round(1.0 / per_step, 4))
        return fitted

    def spent(self, state: dict[str, Any]) -> bool:
        return state["seen"]["seconds"] >= self.seconds


def clock_budget(cfg: TrainingConfig, cap: int) -> ClockBudget | None:
    return ClockBudget(cfg.budget_minutes * 60.0, cap) if cfg.budget_minutes else None


def resolve_graph(graph: str, samples: int, on_cpu: bool) -> str:
    """`auto`: compile the training step on an accelerator for jobs large enough to amortise compiling; eager on a
    CPU, where the compiled step measured slower than eager (TIGER-size T5, Beauty, bf16, 2 cores: 245 vs 269
    samples/s, `benchmarks/training.py`, ~56 s to compile; static-shape probes: no gain without dropout, a loss
    with it)."""
    if graph != "auto":
        return graph
    return "compile" if samples >= COMPILE_MIN_SAMPLES and not on_cpu else "eager"
