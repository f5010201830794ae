"""Every registered backbone passes the same checks: it trains next-item from a finite loss whose gradient reaches its
trainable weights, its weights round-trip through mmgr's weight files, and its search returns distinct real items,
best first, for every history."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmgr.backbones import BACKBONES
from mmgr.engines.method import stage_data
from mmgr.inference.generative import build_model
from mmgr.objectives.base import OBJECTIVES
from mmgr.weights import load_state, unique_state
from tests.helpers import prepared


@pytest.fixture(params=BACKBONES.names())
def backbone(request, tmp_path_factory) -> tuple[str, list[str]]:
    """(name, config overrides); `llm` reads a tiny random Llama saved as a pretrained folder."""
    if request.param != "llm":
        return request.param, []
    pytest.importorskip("peft", reason="model.kind=llm needs peft: pip install 'mmgr[llm]'")
    from tests.helpers import save_tiny_lm

    return "llm", [f"model.llm.pretrained={save_tiny_lm(tmp_path_factory.mktemp('lm'), 'llama')}"]


def built(backbone):
    name, overrides = backbone
    prep, config = prepared("next-item")
    config.model.kind = name
    for override in overrides:
        key, value = override.split("=", 1)
        *sections, name = key.split(".")[1:]
        section = config.model
        for part in sections:
            section = getattr(section, part)
        setattr(section, name, value)
    return prep, config, build_model(config, prep)


def test_next_item_loss_is_finite_and_reaches_every_trainable_weight(backbone):
    prep, config, model = built(backbone)
    with torch.no_grad():                                   # LoRA's B starts at 0, which would stop A's gradient
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)
    data, count = stage_data(OBJECTIVES.get("next-item"), prep, config)
    loss = data.loss(model, data.collate(data.batches(0)[0]))
    assert count > 0 and loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    silent = [n for n, p in trainable if p.grad is None or not p.grad.abs().sum() > 0]
    assert trainable and not silent, silent


def test_weights_round_trip_through_the_weight_file(backbone):
    prep, config, model = built(backbone)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
    fresh = build_model(config.model_copy(update={"seed": 1}), prep)
    load_state(fresh, unique_state(model))
    state = {k: v for k, v in fresh.state_dict().items()}
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def test_search_returns_distinct_real_items_best_first(backbone):
    prep, config, model = built(backbone)
    entry = BACKBONES.get(config.model.kind)
    layout = prep.layout
    histories = [np.array(s[:3]) for s in prep.split.train[:4]]
    rows = [layout.encoder_tokens(u, h) for u, h in zip(prep.user_ids, histories, strict=False)]
    rows = [entry.prompt(layout.vocab, r) for r in rows] if entry.prompt else rows
    width = max(len(r) for r in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.int64)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, :len(r)], mask[i, :len(r)] = torch.from_numpy(r), 1
    items, scores = entry.search(model.eval(), ids, mask, prep.tries["item"], 8, 5)
    assert items.shape == (4, 5) and ((items >= 0) & (items < len(layout.item_tokens))).all()
    assert all(len(set(row.tolist())) == 5 for row in items) and (scores[:, :-1] >= scores[:, 1:]).all()
