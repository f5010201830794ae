"""What a validation metric's direction is (`training.monitor`): NDCG@10 rises as a model improves, the held-out
loss falls. `gain` turns either into a higher-is-better value, for picking the best validation, stopping early and
judging convergence."""

from __future__ import annotations

LOWER_IS_BETTER = frozenset({"loss"})       # validation metrics where a smaller value is the better one


def gain(value: float, monitor: str) -> float:
    """`value` of metric `monitor` as a higher-is-better quantity (-loss for the loss)."""
    return -value if monitor in LOWER_IS_BETTER else value


def improves(value: float, best: float | None, monitor: str) -> bool:
    """Whether a validation's `monitor` value beats the best so far (None: nothing yet)."""
    return best is None or gain(value, monitor) > gain(best, monitor)
