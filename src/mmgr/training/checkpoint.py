"""Resumable checkpoints in one safetensors file: model weights, optimizer tensors, RNG state; everything else
(optimizer hyper-parameters, scheduler, loop position, best score) as JSON in its metadata. Written atomically,
so a kill during a save leaves the previous checkpoint intact. Nothing is pickled."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from mmgr.errors import MmgrError
from mmgr.io import atomic_path
from mmgr.weights import load_state, unique_state

FORMAT = "mmgr-checkpoint-1"


def save_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: Any, progress: dict[str, Any]) -> None:
    tensors = {f"model.{k}": v for k, v in unique_state(model).items()}
    optim = optimizer.state_dict()
    for index, state in optim["state"].items():
        for name, value in state.items():
            tensors[f"optim.{index}.{name}"] = torch.as_tensor(value).detach().clone().contiguous()
    tensors["rng.torch"] = torch.get_rng_state()
    meta = {"format": FORMAT, "param_groups": optim["param_groups"], "scheduler": scheduler.state_dict(),
            "progress": progress}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"mmgr": json.dumps(meta)})


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: Any) -> dict[str, Any]:
    """Restore everything saved by `save_checkpoint`; returns the loop progress."""
    with safe_open(str(path), framework="pt") as handle:
        meta = json.loads((handle.metadata() or {}).get("mmgr", "{}"))
        if meta.get("format") != FORMAT:
            raise MmgrError(f"{path}: not an mmgr checkpoint of format {FORMAT}")
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 - safe_open API
    load_state(model, {k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    scheduler.load_state_dict(meta["scheduler"])
    torch.set_rng_state(tensors["rng.torch"])
    return meta["progress"]


def checkpoint_progress(path: Path) -> dict[str, Any] | None:
    """The loop progress a checkpoint holds, with the training setup it was written for (None for unreadable or
    foreign files)."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            return json.loads((handle.metadata() or {}).get("mmgr", "{}")).get("progress")
    except (OSError, ValueError, SafetensorError):             # JSONDecodeError is a ValueError
        return None
