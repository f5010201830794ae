"""`train`, `evaluate` and `recommend` stages for the generative T5 recommender on a run directory.

train    -> model.safetensors (best validation epoch) + checkpoints/last.safetensors + logs/, manifest `train`
evaluate -> results.json (validation and test metrics) + per_user_<split>.parquet, manifest `evaluate`
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from mmgr.config import Config
from mmgr.data.dataset import Dataset
from mmgr.data.splits import Examples, LeaveOneOut, leave_one_out
from mmgr.decoding.trie import PrefixTrie
from mmgr.errors import MmgrError
from mmgr.evaluation.metrics import DEFAULT_KS, summarize
from mmgr.evaluation.protocol import evaluate_examples, protocol_description, rank_items, subset
from mmgr.io import write_json_atomic, write_parquet_atomic
from mmgr.layouts.base import SingleSidLayout
from mmgr.models.seq2seq import build_t5
from mmgr.rundir import RunDir
from mmgr.tokenizers.stage import load_codes
from mmgr.training.checkpoint import load_state, load_weights
from mmgr.training.data import encode_examples, prefix_examples
from mmgr.training.loop import BEST, fit, seeded_sample, t5_train_data


@dataclass
class RunData:
    """What every model's stages read from a run: the dataset, user ids by row, the leave-one-out split."""

    dataset: Dataset
    user_ids: list[str]
    split: LeaveOneOut


@dataclass
class Prepared(RunData):
    """`RunData` plus the generative path's layout and decoding trie."""

    layout: SingleSidLayout
    trie: PrefixTrie


def load_run_data(run: RunDir, config: Config) -> RunData:
    manifest = run.manifest()
    if "dataset" not in manifest:
        raise MmgrError(f"{run.path}: no dataset; run `mmgr data import` first")
    dataset = Dataset.load(run.path, manifest["dataset"]["name"])
    split = leave_one_out(dataset.item_sequences(), config.split.max_history)
    return RunData(dataset, dataset.sequences["user_id"].to_pylist(), split)


def prepare(run: RunDir, config: Config) -> Prepared:
    data = load_run_data(run, config)
    codes, _ = load_codes(run)
    if config.model.modality not in codes:
        raise MmgrError(f"no {config.model.modality} codes in {run.path}/codes; run `mmgr tokenize {run.path} "
                        f"--modality {config.model.modality}` (have: {', '.join(codes)})")
    layout = SingleSidLayout.from_codes(codes[config.model.modality], config.split.max_history,
                                        config.model.user_buckets)
    trie = PrefixTrie.build(torch.from_numpy(layout.item_tokens))
    return Prepared(data.dataset, data.user_ids, data.split, layout, trie)


def train_run(run: RunDir, config: Config, progress: bool = True) -> dict[str, Any]:
    if config.model.kind == "sasrec":
        from mmgr.training.sasrec_stage import train_sasrec_run

        return train_sasrec_run(run, config, progress)
    prep = prepare(run, config)
    users, histories, targets = prefix_examples(prep.split.train, config.split.max_history)
    examples = encode_examples(prep.layout, prep.user_ids, users, histories, targets)
    valid = subset(prep.split.valid, seeded_sample(len(prep.split.valid), config.training.eval_users, config.seed))
    model = build_t5(config.model, prep.layout.vocab, config.seed)

    def validate(current: torch.nn.Module) -> float:
        metrics, _ = evaluate_examples(current, prep.layout, prep.user_ids, valid, prep.trie, config.decoding,
                                       ks=(10,))
        return float(metrics["ndcg@10"].mean())

    info = {**codes_info(prep), "dataset_fingerprint": run.manifest()["dataset"]["fingerprint"],
            "model": config.model.model_dump(), "max_history": config.split.max_history, "seed": config.seed}
    start = time.perf_counter()
    data = t5_train_data(examples, config.training.batch_size, config.seed)
    result = fit(run.path, model, data, config.training, validate, info, progress=progress)
    summary = {**asdict(result), "train_examples": len(examples), "validation_users": len(valid),
               "wall_seconds": round(time.perf_counter() - start, 3),
               "parameters": sum(p.numel() for p in model.parameters())}
    run.record("train", summary, config=config.model_dump(mode="json"))
    return summary


def codes_info(prep: Prepared) -> dict[str, Any]:
    """Identity of the item codes a model is trained on: a model never decodes with codes it was not trained on."""
    tokens = np.ascontiguousarray(prep.layout.item_tokens)
    return {"vocab_size": prep.layout.vocab.size, "item_tokens_shape": list(tokens.shape),
            "item_tokens_sha256": hashlib.sha256(tokens.tobytes()).hexdigest()}


def load_model(run: RunDir, config: Config, prep: Prepared) -> torch.nn.Module:
    tensors, info = load_weights(run.path / BEST)
    if {key: info.get(key) for key in codes_info(prep)} != codes_info(prep):
        raise MmgrError(f"{run.path / BEST} was trained with another tokenizer or vocabulary "
                        f"(vocab {info.get('vocab_size')} vs {prep.layout.vocab.size}); re-run `mmgr train`")
    model = build_t5(config.model, prep.layout.vocab, config.seed)
    load_state(model, tensors)
    return model.eval()


def evaluate_run(run: RunDir, config: Config, progress: bool = True,
                 splits: tuple[str, ...] = ("valid", "test")) -> dict[str, Any]:
    if config.model.kind == "sasrec":
        from mmgr.training.sasrec_stage import evaluate_sasrec_run

        return evaluate_sasrec_run(run, config, progress)
    prep = prepare(run, config)
    model = load_model(run, config, prep)
    results: dict[str, Any] = {"protocol": protocol_description(config.decoding, DEFAULT_KS)}
    for name in splits:
        examples = getattr(prep.split, name)
        start = time.perf_counter()
        metrics, ranked = evaluate_examples(model, prep.layout, prep.user_ids, examples, prep.trie,
                                            config.decoding, progress=progress)
        seconds = time.perf_counter() - start
        results[name] = {**summarize(metrics), "users": len(examples), "users_per_second": len(examples) / seconds}
        save_per_user(run, name, prep.user_ids, examples, metrics, ranked)
    write_json_atomic(run.path / "results.json", results)
    run.record("evaluate", {name: results[name] for name in splits})
    return results


def recommend(run: RunDir, config: Config, user_id: str, k: int) -> list[dict[str, Any]]:
    """Top-k items (with titles) for a known user, from their full history."""
    if config.model.kind == "sasrec":
        from mmgr.training.sasrec_stage import recommend_sasrec

        return recommend_sasrec(run, config, user_id, k)
    prep = prepare(run, config)
    try:
        row = prep.user_ids.index(user_id)
    except ValueError:
        raise MmgrError(f"unknown user {user_id!r}") from None
    model = load_model(run, config, prep)
    decoding = config.decoding.model_copy(update={"top_k": k, "beam_size": max(k, config.decoding.beam_size)})
    items, scores = rank_items(model, prep.layout, [user_id], [prep.dataset.item_sequences()[row]], prep.trie,
                               decoding)
    titles = prep.dataset.items["title"].to_pylist()
    ids = prep.dataset.items["item_id"].to_pylist()
    return [{"rank": r + 1, "item_id": ids[i], "title": titles[i], "score": float(s)}
            for r, (i, s) in enumerate(zip(items[0].tolist(), scores[0].tolist(), strict=True)) if i >= 0]


def save_per_user(run: RunDir, name: str, user_ids: list[str], examples: Examples, metrics: dict[str, np.ndarray],
                  ranked: np.ndarray) -> None:
    """per_user_<split>.parquet: user, target, ranked list and every metric, for paired significance tests."""
    table = pa.table({"user_id": [user_ids[u] for u in examples.users.tolist()],
                      "target": examples.targets, "ranked": [r[r >= 0].tolist() for r in ranked],
                      **{k: v for k, v in metrics.items() if not k.startswith("recall")}})
    write_parquet_atomic(run.path / f"per_user_{name}.parquet", table)
