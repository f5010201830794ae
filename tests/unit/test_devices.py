"""Precision by hardware: bf16 only where it is native (a bf16 GPU, or a CPU with AVX512-BF16 or AMX); explicit
choices are kept."""

from __future__ import annotations

import pytest
import torch

from mmgr import devices
from mmgr.config import load_config


@pytest.fixture
def machine(monkeypatch):
    def make(cpu_bf16: bool, gpu: bool = False, gpu_bf16: bool = False) -> None:
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: cpu_bf16)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
        monkeypatch.setattr(torch.cuda, "is_available", lambda: gpu)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: gpu_bf16)
    return make


@pytest.mark.parametrize(("cpu_bf16", "expected"), [(False, "32-true"), (True, "bf16-mixed")])
def test_auto_precision_follows_the_cpu(machine, cpu_bf16, expected):
    machine(cpu_bf16)
    assert devices.resolve_precision("auto") == expected
    assert devices.resolve_precision("32-true") == "32-true" and devices.resolve_precision("bf16-mixed") == "bf16-mixed"


def test_a_gpu_counts_only_when_training_runs_on_it(machine):
    machine(cpu_bf16=False, gpu=True, gpu_bf16=True)
    assert devices.resolve_precision("auto", "auto") == "bf16-mixed"
    assert devices.resolve_precision("auto", "cpu") == "32-true"
    machine(cpu_bf16=False, gpu=True, gpu_bf16=False)              # a GPU without bf16 (V100, T4)
    assert devices.resolve_precision("auto", "gpu") == "32-true"
    assert load_config(None, []).training.precision == "auto"
