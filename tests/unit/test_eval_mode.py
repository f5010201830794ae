"""`eval_mode`: dropout off inside, the caller's state back afterwards; a model already wholly in eval mode (what a
server decodes with) is not re-flagged on every call."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mmgr.models.modes import eval_mode


def model() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5), nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5)))


def modes(net: nn.Module) -> list[bool]:
    return [module.training for module in net.modules()]


def test_a_training_model_decodes_without_dropout_and_trains_again_afterwards():
    net = model().train()
    with eval_mode(net):
        assert not any(modes(net))
        x = torch.ones(2, 4)
        assert torch.equal(net(x), net(x))                     # deterministic: dropout is off
    assert all(modes(net))


def test_a_model_in_eval_mode_is_left_alone(monkeypatch):
    net = model().eval()
    monkeypatch.setattr(nn.Module, "train", lambda self, mode=True: pytest.fail("an eval model was re-flagged"))
    with eval_mode(net):
        assert not any(modes(net))
    assert not any(modes(net))


def test_one_training_submodule_is_switched_off_inside_as_before():
    net = model().eval()
    net[1].train()                                             # the top module says eval, one dropout does not
    with eval_mode(net):
        assert not any(modes(net))
    assert not any(modes(net))                                 # restored as `model.train(False)` always did


def test_the_state_comes_back_when_the_block_raises():
    net = model().train()
    with pytest.raises(RuntimeError), eval_mode(net):
        raise RuntimeError("decoding failed")
    assert all(modes(net))
