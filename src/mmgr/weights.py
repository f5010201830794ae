"""A trained model's weight file (`model.safetensors` in a run): its tensors, without tied duplicates and frozen
pretrained weights, and JSON metadata that says what it was trained on (codes, vocabulary, settings), so a
mismatched load is refused. Written atomically; nothing is pickled."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from mmgr.errors import MmgrError
from mmgr.io import atomic_path

BEST = "model.safetensors"      # a run's trained weights (the best validation epoch where validated)


def save_weights(path: Path, model: torch.nn.Module, info: dict[str, Any]) -> None:
    tensors = unique_state(model)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"mmgr": json.dumps(info)})


def load_weights(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    if not path.is_file():
        raise MmgrError(f"{path}: no trained model; run `mmgr train` first")
    with safe_open(str(path), framework="pt") as handle:
        info = json.loads((handle.metadata() or {}).get("mmgr", "{}"))
        return {key: handle.get_tensor(key) for key in handle.keys()}, info  # noqa: SIM118


def weights_info(path: Path) -> dict[str, Any]:
    """The metadata `save_weights` recorded (without reading the tensors)."""
    if not path.is_file():
        raise MmgrError(f"{path}: no trained model; run `mmgr train` first")
    with safe_open(str(path), framework="pt") as handle:
        return json.loads((handle.metadata() or {}).get("mmgr", "{}"))


def frozen_keys(model: torch.nn.Module) -> set[str]:
    """Names of parameters that do not train (a pretrained LM's own weights under LoRA): they come from the
    pretrained model, not from mmgr's weight files."""
    return {name for name, p in model.named_parameters(remove_duplicate=False) if not p.requires_grad}


def unique_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The state dict without second names of tied tensors (T5 shares its embeddings), as safetensors needs, and
    without frozen pretrained weights."""
    seen: set[int] = set()
    frozen = frozen_keys(model)
    out = {}
    for key, value in model.state_dict().items():
        if key not in frozen and value.data_ptr() not in seen:
            seen.add(value.data_ptr())
            out[key] = value.detach().contiguous()
    return out


def load_state(model: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """Load weights saved by `unique_state`; only tied and frozen tensors may be absent."""
    state = model.state_dict()
    unknown = sorted(set(tensors) - set(state))
    if unknown:
        raise MmgrError(f"weights do not match the model: unexpected {unknown[:5]}")
    missing, _ = model.load_state_dict(tensors, strict=False)
    saved = {state[k].data_ptr() for k in tensors}
    tied = {key for key in missing if state[key].data_ptr() in saved}
    absent = set(missing) - tied - frozen_keys(model)
    if absent:
        raise MmgrError(f"weights do not match the model: missing {sorted(absent)[:5]}")
