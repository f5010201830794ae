"""Run stages for the SASRec baseline: train (the shared Fabric loop of `mmgr.training.loop`), evaluate (exact
full ranking, same results.json / per-user Parquet as the generative path) and recommend."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from torch import nn

from mmgr.config import Config
from mmgr.data.splits import Examples
from mmgr.devices import compute_device
from mmgr.errors import MmgrError
from mmgr.evaluation.metrics import DEFAULT_KS, per_user
from mmgr.evaluation.protocol import protocol_description, subset
from mmgr.models.sasrec import (
    SASRec,
    build_sasrec,
    collate_sequences,
    epoch_batches,
    rank_all_items,
    training_sequences,
)
from mmgr.rundir import RunDir
from mmgr.training.checkpoint import load_state, load_weights
from mmgr.training.loop import BEST, TrainData, fit, seeded_sample
from mmgr.training.rundata import RunData, evaluate_splits, load_run_data
from mmgr.training.stage import ENGINES, Engine


def sasrec_train_data(sequences: list[np.ndarray], batch_size: int, seed: int) -> TrainData:
    """Users reshuffled each epoch by (seed, epoch), length-sorted within chunks, padded to their real length."""
    lengths = np.array([len(s) - 1 for s in sequences], dtype=np.int64)
    return TrainData(lambda epoch: epoch_batches(lengths, batch_size, seed, epoch),
                     lambda index: collate_sequences(sequences, index))


def evaluate_sasrec(model: nn.Module, examples: Examples, top_k: int = 20, batch_size: int = 256,
                    ks: tuple[int, ...] = DEFAULT_KS, progress: bool = False
                    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Per-user metrics (hr/recall/ndcg/mrr @ each k <= top_k) and the ranked lists for `examples`."""
    ranked, _ = rank_all_items(model, examples.histories, top_k, batch_size, progress)
    return per_user(ranked, examples.targets, tuple(k for k in ks if k <= ranked.shape[1])), ranked


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

    def validate(current: nn.Module) -> float:
        metrics, _ = evaluate_sasrec(current, valid, top_k=10, batch_size=config.decoding.batch_size, ks=(10,))
        return float(metrics["ndcg@10"].mean())

    start = time.perf_counter()
    result = fit(run.path, model, sasrec_train_data(sequences, config.training.batch_size, config.seed),
                 config.training, validate, weights_info(run, config, data.dataset.num_items), progress=progress)
    summary = {**asdict(result), "train_sequences": len(sequences),
               "train_positions": int(sum(len(s) - 1 for s in sequences)), "validation_users": len(valid),
               "wall_seconds": round(time.perf_counter() - start, 3),
               "parameters": sum(p.numel() for p in model.parameters())}
    run.record("train", summary, config=config.model_dump(mode="json"))
    return summary


def load_sasrec(run: RunDir, config: Config, num_items: int) -> SASRec:
    """The best weights of the run (`model.safetensors`), checked against the dataset and config."""
    tensors, info = load_weights(run.path / BEST)
    expected = {"model": "sasrec", "num_items": num_items, "max_history": config.split.max_history}
    if {key: info.get(key) for key in expected} != expected:
        raise MmgrError(f"{run.path / BEST} does not match this run's SASRec ({expected}; it records "
                        f"{ {key: info.get(key) for key in expected} }); re-run `mmgr train`")
    model = build_sasrec(config.model, num_items, config.split.max_history, config.seed)
    load_state(model, tensors)
    return model.eval()


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


@dataclass
class SASRecRanker:
    """A trained SASRec run: exact top-k of the softmax over every item after the last history position."""

    data: RunData
    model: SASRec
    max_history: int
    explains: tuple[str, ...] = ()                 # item ids carry no text to write

    def rank(self, user_ids: list[str], histories: list[np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
        return rank_all_items(self.model, [np.asarray(h)[-self.max_history:] for h in histories], k)

    def batch_key(self, k: int) -> int:
        return 0                                   # exact top-k: any k's list starts with a smaller k's

    def decoding_tables(self) -> dict[str, np.ndarray]:
        return {}                                  # ranks every item exactly: no trie

    def explain(self, items: list[int]) -> list[dict[str, str]]:
        raise MmgrError("SASRec has no semantic IDs to explain; explanations come from a TriAlignGR run "
                        "(training.objective=tmt with a sid->title task)")

    def extended(self, config: Config, codes: dict, items: object) -> SASRecRanker:
        raise MmgrError("SASRec scores only the items it was trained on (one embedding per item id); onboarding "
                        "new items needs a semantic-ID method (TIGER, MGR, SynGR)")


def sasrec_ranker(run: RunDir, config: Config) -> SASRecRanker:
    data = load_run_data(run, config)
    return SASRecRanker(data, load_sasrec(run, config, data.dataset.num_items), config.split.max_history)


ENGINES.register("sasrec")(Engine(train_sasrec_run, evaluate_sasrec_run, sasrec_ranker, needs_codes=False))
