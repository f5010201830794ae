"""Whether a stage's checkpoint may be resumed: the setup it recorded (model, data, vocabulary, optimisation and
batching), read with today's settings, must equal this run's; patience, validation cadence and budgets may change."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from mmgr.config import TrainingConfig, read_recorded
from mmgr.training.data import BATCHING

RESUMABLE_CHANGES: dict[str, Any] = {key: True for key in (
    "epochs", "max_steps", "patience", "eval_every", "eval_every_steps", "eval_users", "checkpoint_every",
    "accelerator", "devices", "budget_minutes", "graph")} | {"alignment": {"epochs"}}


def setup_settings(weights_info: dict[str, Any], cfg: TrainingConfig) -> dict[str, Any]:
    """What must match for a checkpoint to be resumed, as JSON values: model, data, vocabulary, optimisation
    settings and the batching scheme (not patience or validation cadence, which a resumed run may change; a changed
    budget is refused on resume)."""
    fixed = cfg.model_dump(exclude=RESUMABLE_CHANGES)
    return json.loads(json.dumps({"weights": weights_info, "training": fixed, "batching": BATCHING}, default=str))


def setup_id(weights_info: dict[str, Any], cfg: TrainingConfig) -> str:
    """The digest checkpoints recorded before they recorded `setup_settings` (of the settings in their shape then)."""
    fixed = cfg.model_dump(exclude=RESUMABLE_CHANGES)
    alignment = fixed.pop("alignment")
    fixed |= {"alignment": alignment["objective"], "alignment_temperature": alignment["temperature"]}
    weights_info = {key: flat_llm(value) if key in MODEL_SETTINGS else value for key, value in weights_info.items()}
    return hashlib.sha256(json.dumps([weights_info, fixed, BATCHING], sort_keys=True, default=str).encode()).hexdigest()


def resumable(progress: dict[str, Any] | None, weights_info: dict[str, Any], cfg: TrainingConfig) -> bool:
    """Whether a checkpoint's loop progress was written for this setup: its recorded setup read today (model and
    training settings through `config_migrations`, settings added since at their defaults) equals this one; a
    checkpoint with only a digest, when it is this setup's."""
    if progress is None:
        return False
    recorded = progress.get("setup_settings")
    if recorded is None:
        return progress.get("setup") == setup_id(weights_info, cfg)
    read = read_setup(recorded)
    return read is not None and read == read_setup(setup_settings(weights_info, cfg))


MODEL_SETTINGS = ("model", "settings")     # where engines' weights_info keep `model.*` (generative, SASRec)


def flat_llm(model: Any) -> Any:
    """Model settings in the shape before `model.llm` (pretrained, lora) was a section; anything else unchanged."""
    if not isinstance(model, dict) or "llm" not in model:
        return model
    return {**{key: value for key, value in model.items() if key != "llm"}, **model["llm"]}


def read_setup(settings: dict[str, Any]) -> dict[str, Any] | None:
    """`setup_settings` with its model and training settings read today (None: they do not validate)."""
    weights = dict(settings["weights"])
    read = read_recorded({"training": settings["training"]})
    if read is None:
        return None
    for key in MODEL_SETTINGS:
        if isinstance(weights.get(key), dict):
            model = read_recorded({"model": weights[key]})
            if model is None:
                return None
            weights[key] = model.model.model_dump(mode="json")
    return {**settings, "weights": weights,
            "training": read.training.model_dump(mode="json", exclude=RESUMABLE_CHANGES)}
