"""Leave-one-out split: per user, the last item is the test target, the second-to-last the validation target,
the rest is training; histories are truncated to the N most recent items."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_SPLIT_LENGTH = 3


@dataclass(frozen=True)
class Examples:
    """Next-item examples: `histories[i]` (int32, oldest first, <= max_history) precedes `targets[i]`."""

    users: np.ndarray            # (E,) user row index
    histories: list[np.ndarray]  # E arrays of item indices
    targets: np.ndarray          # (E,) item index

    def __len__(self) -> int:
        return int(self.targets.size)


@dataclass(frozen=True)
class LeaveOneOut:
    train: list[np.ndarray]   # per user, items[:-2] (the whole sequence for users too short to split)
    valid: Examples
    test: Examples
    short_users: int          # users with fewer than MIN_SPLIT_LENGTH items: train only

    def summary(self) -> dict[str, int]:
        return {"train_interactions": int(sum(len(s) for s in self.train)), "valid_examples": len(self.valid),
                "test_examples": len(self.test), "users_too_short_to_evaluate": self.short_users}


def leave_one_out(sequences: list[np.ndarray], max_history: int) -> LeaveOneOut:
    long_users = [u for u, seq in enumerate(sequences) if len(seq) >= MIN_SPLIT_LENGTH]
    train = [seq[:-2] if len(seq) >= MIN_SPLIT_LENGTH else seq for seq in sequences]
    return LeaveOneOut(train, _examples(sequences, long_users, 2, max_history),
                       _examples(sequences, long_users, 1, max_history), len(sequences) - len(long_users))


def _examples(sequences: list[np.ndarray], users: list[int], from_end: int, max_history: int) -> Examples:
    histories = [sequences[u][:-from_end][-max_history:] for u in users]
    targets = np.array([sequences[u][-from_end] for u in users], dtype=np.int64)
    return Examples(np.asarray(users, dtype=np.int64), histories, targets)
