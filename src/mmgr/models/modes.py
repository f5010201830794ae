"""Running a model in a mode for one call without changing the caller's state."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Dropout off for the block (decoding, saliency); the caller's train/eval state is restored afterwards. A model
    with no module in training mode (a served or evaluated one) is left as it is: setting every module's flag on the
    way in and again on the way out was a visible share of a served request's time (each beam search enters this)."""
    if not any(module.training for module in model.modules()):
        yield
        return
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)
