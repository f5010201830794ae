"""Run stages for the SASRec baseline: train (the shared Fabric loop of `mmgr.training.loop`) and evaluate (exact
full ranking, same results.json / per-user Parquet as the generative path); ranking is `mmgr.inference.sasrec`."""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

import numpy as np
from torch import nn

from mmgr.config import Config
from mmgr.devices import compute_device
from mmgr.engines.base import ENGINES, Engine
from mmgr.errors import MmgrError
from mmgr.evaluation.metrics import DEFAULT_KS
from mmgr.evaluation.protocol import protocol_description, subset
from mmgr.inference.rundata import evaluate_splits, load_run_data
from mmgr.inference.sasrec import evaluate_sasrec, load_sasrec
from mmgr.models.sasrec import build_sasrec, collate_sequences, epoch_batches, heldout_loss, training_sequences
from mmgr.rundir import RunDir
from mmgr.training.loop import TrainData, fit, seeded_sample


def sasrec_train_data(sequences: list[np.ndarray], batch_size: int, seed: int) -> TrainData:
    """Users reshuffled each epoch by (seed, epoch), length-sorted within chunks, padded to their real length."""
    lengths = np.array([len(s) - 1 for s in sequences], dtype=np.int64)
    return TrainData(lambda epoch: epoch_batches(lengths, batch_size, seed, epoch),
                     lambda index: collate_sequences(sequences, index))


def weights_info(run: RunDir, config: Config, num_items: int) -> dict[str, Any]:
    """What `model.safetensors` records so a mismatched load is refused."""
    return {"model": "sasrec", "num_items": num_items, "max_history": config.split.max_history,
            "dataset_fingerprint": run.manifest()["dataset"]["fingerprint"], "settings": config.model.model_dump(),
            "seed": config.seed}


def train_sasrec_run(run: RunDir, config: Config, progress: bool = True) -> dict[str, Any]:
    """`train` stage for `model.kind: sasrec`: model.safetensors, checkpoints/next-item/last.safetensors, logs/,
    manifest."""
    data = load_run_data(run, config)
    sequences = training_sequences(data.split.train, config.split.max_history)
    if not sequences:
        raise MmgrError(f"{run.path}: no user has two training items; nothing to train on")
    valid = subset(data.split.valid, seeded_sample(len(data.split.valid), config.training.eval_users, config.seed))
    model = build_sasrec(config.model, data.dataset.num_items, config.split.max_history, config.seed)

    def validate(current: nn.Module) -> dict[str, float]:
        metrics, _ = evaluate_sasrec(current, valid, top_k=10, batch_size=config.decoding.batch_size, ks=(10,))
        return {"ndcg@10": float(metrics["ndcg@10"].mean()),
                "loss": heldout_loss(current, valid.histories, valid.targets, config.decoding.batch_size)}

    start = time.perf_counter()
    result = fit(run.path, model, sasrec_train_data(sequences, config.training.batch_size, config.seed),
                 config.training, validate, weights_info(run, config, data.dataset.num_items), progress=progress)
    summary = {**asdict(result), "train_sequences": len(sequences),
               "train_positions": int(sum(len(s) - 1 for s in sequences)), "validation_users": len(valid),
               "wall_seconds": round(time.perf_counter() - start, 3),
               "parameters": sum(p.numel() for p in model.parameters())}
    run.record("train", summary, config=config.model_dump(mode="json"))
    return summary


def evaluate_sasrec_run(run: RunDir, config: Config, progress: bool = True,
                        splits: tuple[str, ...] = ("valid", "test")) -> dict[str, Any]:
    """`evaluate` stage: results.json (valid + test) and per_user_<split>.parquet, as `evaluate_run` writes."""
    data = load_run_data(run, config)
    model = load_sasrec(run, config, data.dataset.num_items).to(compute_device(config.training.accelerator))
    top_k = config.decoding.top_k
    protocol = {**protocol_description(config.decoding, DEFAULT_KS),
                "ranking": "full (every catalog item), exact top-k of the last position's softmax scores"}
    protocol.pop("beam_size", None)
    return evaluate_splits(run, data, splits, protocol, lambda examples: evaluate_sasrec(
        model, examples, top_k, config.decoding.batch_size, progress=progress))


ENGINES.register("sasrec")(Engine(train_sasrec_run, evaluate_sasrec_run, needs_codes=False))
