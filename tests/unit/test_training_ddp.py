"""The same training loop on two CPU processes (Lightning Fabric DDP over gloo): both ranks see different batches
yet end with identical weights, and each runs its half of every epoch."""

from __future__ import annotations

import json

import torch
from lightning.fabric import Fabric
from safetensors.torch import load_file, save_file

import mmgr.training.loop as loop
from mmgr.models.seq2seq import build_t5
from tests.helpers import TOY_MODEL, VOCAB, settings, toy_examples


def train_on_rank(fabric: Fabric, folder) -> None:
    model = build_t5(TOY_MODEL, VOCAB, seed=0)
    data = loop.bucketed_train_data(toy_examples(), 16, seed=1)
    result = loop.fit(folder, model, data, settings(devices=2), validate=lambda m: {"ndcg@10": 0.0}, weights_info={},
                      fabric=fabric, progress=False)
    rank = fabric.global_rank
    save_file({k: v.detach().clone() for k, v in model.state_dict().items()}, str(folder / f"rank{rank}.st"))
    (folder / f"rank{rank}.json").write_text(json.dumps({"steps": result.steps, "world": fabric.world_size}))


def test_two_process_ddp_ranks_agree(tmp_path):
    fabric = Fabric(accelerator="cpu", devices=2, strategy="ddp_spawn", precision="32-true")
    fabric.launch(train_on_rank, tmp_path)
    ranks = [load_file(str(tmp_path / f"rank{r}.st")) for r in (0, 1)]
    start = build_t5(TOY_MODEL, VOCAB, seed=0).state_dict()
    assert any(not torch.equal(ranks[0][k], start[k]) for k in start)          # it trained
    for key, value in ranks[0].items():
        torch.testing.assert_close(ranks[1][key], value, rtol=0, atol=0)      # gradients were all-reduced
    runs = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert runs[0] == runs[1] == {"steps": 9, "world": 2}                     # 3 epochs x 6 batches / 2 ranks
