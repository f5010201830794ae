"""What the machine computes well: bf16 where the hardware has it natively (a CUDA GPU with bf16, or a CPU with
AVX512-BF16 or AMX), full precision elsewhere. On a CPU without native bf16 the products are emulated: measured on
this project's AVX2-only AMD EPYC machine, a 2048 x 2048 product took 65 s in bf16 against 0.32 s in fp32, and a
TIGER training step ~40 s instead of ~2.5 s in fp32."""

from __future__ import annotations

import os
import platform

import torch


def cpu_bf16_supported() -> bool:
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def on_gpu(accelerator: str = "auto") -> bool:
    """Whether `accelerator` (Lightning's name: auto, cpu, gpu, cuda) runs on a CUDA GPU here."""
    return accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()


def compute_device(accelerator: str = "auto") -> torch.device:
    """Where a trained model evaluates: the GPU that `accelerator` trains on, else the CPU."""
    return torch.device("cuda" if on_gpu(accelerator) else "cpu")


def bf16_supported(accelerator: str = "auto") -> bool:
    """Whether training on `accelerator` runs bf16 natively."""
    return torch.cuda.is_bf16_supported() if on_gpu(accelerator) else cpu_bf16_supported()


def resolve_precision(precision: str, accelerator: str = "auto") -> str:
    """A Lightning precision: `auto` is `bf16-mixed` where bf16 is native on `accelerator`, `32-true` elsewhere."""
    if precision != "auto":
        return precision
    return "bf16-mixed" if bf16_supported(accelerator) else "32-true"


def describe_device() -> str:
    """The machine results were measured on, as results files name it."""
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"cpu ({os.cpu_count()} cores, {platform.machine()}, torch {torch.__version__})"
