"""The base of every config section (`mmgr.config`, `mmgr.config_encoders`) and the type of settings that name a
registered part."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict

from mmgr.parts import part_names


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


def choices(kind: str, *extra: str) -> list[str]:
    """The names a setting of registry `kind` accepts: the registered ones and `extra` (e.g. "none"), sorted."""
    return sorted({*part_names(kind), *extra})


def _known(kind: str, extra: tuple[str, ...]) -> Callable[[str], str]:
    def check(name: str) -> str:
        known = choices(kind, *extra)
        if name not in known:
            raise ValueError(f"unknown {kind} {name!r}; known: {', '.join(map(repr, known))}")
        return name
    return check


def registered(kind: str, *extra: str) -> Any:
    """The type of a setting that names a part of registry `kind` (see `mmgr.parts`) or one of `extra`."""
    return Annotated[str, AfterValidator(_known(kind, extra))]
