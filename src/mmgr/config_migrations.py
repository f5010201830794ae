"""Settings recorded by earlier versions of mmgr, read today.

Runs record the settings they were made with: the whole config (manifest), each stage's deciding sections
(`pipeline.<stage>`) and each checkpoint's training setup. Settings change shape over time; a recorded config is
read through `migrated` before it is validated: a setting added since takes its default, a renamed or moved one is
carried by a migration in `MIGRATIONS` (oldest first: a function from a raw config dict, or some of its sections,
to the next shape, which leaves a dict already in that shape unchanged), and a recorded config that still does not
validate is another version's (nothing made with it is reused). So stored runs stay reusable, and killed ones
resumable, across versions that add or move settings, while a changed value (a changed default included, as the
recorded value is explicit) is always seen.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

Migration = Callable[[dict[str, Any]], dict[str, Any]]

def alignment_into_its_section(raw: dict[str, Any]) -> dict[str, Any]:
    """`training.alignment: NAME`, `training.alignment_epochs`, `training.alignment_temperature` (flat) ->
    `training.alignment: {objective, epochs, temperature}` (so `training.alignment=NAME` still names the stage)."""
    training = raw.get("training")
    if not isinstance(training, dict):
        return raw
    section = training.get("alignment")
    section = {"objective": section} if isinstance(section, str) else section
    moved = {new: training.pop(old) for old, new in (("alignment_epochs", "epochs"),
                                                      ("alignment_temperature", "temperature")) if old in training}
    if section is not None or moved:
        training["alignment"] = {**(section or {}), **moved}
    return raw


def llm_into_its_section(raw: dict[str, Any]) -> dict[str, Any]:
    """`model.pretrained`, `model.lora` -> `model.llm: {pretrained, lora}`."""
    model = raw.get("model")
    if isinstance(model, dict) and ("pretrained" in model or "lora" in model):
        moved = {key: model.pop(key) for key in ("pretrained", "lora") if key in model}
        model["llm"] = {**(model.get("llm") or {}), **moved}
    return raw


MIGRATIONS: list[Migration] = [alignment_into_its_section, llm_into_its_section]


def migrated(raw: dict[str, Any]) -> dict[str, Any]:
    """A raw (possibly partial) config dict in today's shape."""
    raw = copy.deepcopy(raw)
    for migration in MIGRATIONS:
        raw = migration(raw)
    return raw
