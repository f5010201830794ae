"""What an objective is: what one training stage of the generative path trains on and with which loss.

Main objectives (`training.objective`, the validated stage; `OBJECTIVES`): `next-item` (`objectives/next_item.py`),
`syngr` (`objectives/syngr.py`), `syngr-released` (`objectives/syngr_released.py`), `tmt` (`objectives/tmt.py`),
`mql4grec` (`objectives/multitask.py`).
Alignment objectives (`training.alignment.objective`, a stage before the main one; `ALIGNMENTS`): `translate` and
`infonce` (`objectives/alignment.py`).

An objective declares the task prompts it needs, the item text fields it reads (both go into the run's one
vocabulary: prompt tokens, and the subword tokens of those texts), the backbones that train it and the `training`
settings section it reads (`settings`: `syngr`, `tmt`, ...), and builds `TrainData` (the generic loop's batches,
collation and loss). It receives only that section and the run's `Batching`, never the whole config. Each
registers itself under its name; `mmgr.parts` maps the names to their modules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from mmgr.registry import Registry

if TYPE_CHECKING:
    from mmgr.inference.prepared import Prepared
    from mmgr.training.loop import TrainData


@dataclass(frozen=True)
class Batching:
    """What an objective's examples and batches follow that is the run's, not the objective's own setting."""

    batch_size: int          # examples per step (`training.batch_size`)
    seed: int                # the run's seed (batch order per epoch)
    max_history: int         # items of history per example (`split.max_history`)
    decoder_only: bool       # the backbone reads one sequence with a target at every item (how examples are cut)


class Objective(Protocol):
    settings: str | None        # the `training` section it reads (passed as `settings`); None: none
    min_modalities: int         # modalities the objective needs (a recipe on data with fewer falls back to next-item)
    backbones: tuple[str, ...] | None   # the `model.kind`s that train it; None: every backbone

    def tasks(self, modalities: list[str]) -> tuple[str, ...]:
        """Task prompt tokens this objective writes (added to the run's vocabulary)."""
        ...

    def text_fields(self, settings: Any) -> tuple[str, ...]:
        """Item text fields the objective reads and writes (their subword tokens join the vocabulary)."""
        ...

    def train_data(self, prep: Prepared, batching: Batching, settings: Any) -> tuple[TrainData, int]:
        """The stage's batches, collation and loss, and its number of training examples."""
        ...


OBJECTIVES: Registry[Objective] = Registry("training objective")
ALIGNMENTS: Registry[Objective] = Registry("alignment objective")


def trains_on(objective: Objective, kind: str) -> bool:
    """Whether backbone `kind` trains `objective`."""
    return objective.backbones is None or kind in objective.backbones


class SidsOnly:
    """Objectives over SID tokens alone."""

    min_modalities = 1
    settings: str | None = None

    def text_fields(self, settings: Any) -> tuple[str, ...]:
        return ()
