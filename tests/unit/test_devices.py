"""Precision by hardware: bf16 only where it is native (a CUDA GPU or an AVX-512 CPU); explicit choices are kept."""

from __future__ import annotations

import pytest
import torch

from mmgr import devices
from mmgr.config import load_config


@pytest.mark.parametrize(("capability", "expected"), [("AVX2", "32-true"), ("DEFAULT", "32-true"),
                                                      ("AVX512", "bf16-mixed"), ("AMX", "bf16-mixed")])
def test_auto_precision_follows_the_cpu(monkeypatch, capability, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    assert devices.resolve_precision("auto") == expected
    assert devices.resolve_precision("32-true") == "32-true" and devices.resolve_precision("bf16-mixed") == "bf16-mixed"


def test_a_gpu_gets_bf16_and_auto_is_the_default(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    assert devices.resolve_precision("auto") == "bf16-mixed"
    assert load_config(None, []).training.precision == "auto"
