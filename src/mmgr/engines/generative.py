"""The generative engine (`model.kind: t5`, `causal`, `item-causal` or `llm`, see `backbones.py`): train and
evaluate every method composed in `mmgr.engines.method` (TIGER, MGR-EF/LF/LF++, SynGR, MQL4GRec, TriAlignGR).

train    -> vocabulary.json, [checkpoints/align/{last,final}.safetensors], model.safetensors (best validation epoch
            of the main stage), checkpoints/next-item/last.safetensors, logs/<stage>/, manifest `train`
evaluate -> results.json (validation and test metrics) + per_user_<split>.parquet, manifest `evaluate`
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from mmgr.backbones import BACKBONES
from mmgr.config import Config
from mmgr.engines.base import ENGINES, Engine
from mmgr.engines.method import prepare_training, stage_data, stages
from mmgr.errors import MmgrError
from mmgr.evaluation.likelihood import heldout_examples, heldout_loss
from mmgr.evaluation.metrics import DEFAULT_KS
from mmgr.evaluation.protocol import evaluate_examples, protocol_description, subset
from mmgr.inference.generative import build_model, load_model, pretrained_info
from mmgr.inference.prepared import Prepared, codes_info, load_prepared
from mmgr.inference.rundata import evaluate_splits
from mmgr.layouts import LAYOUTS
from mmgr.objectives.base import trains_on
from mmgr.rundir import RunDir
from mmgr.training.loop import NEXT_ITEM, fit, seeded_sample
from mmgr.weights import BEST, load_state, load_weights


def train_generative(run: RunDir, config: Config, progress: bool = True) -> dict[str, Any]:
    backbone = BACKBONES.get(config.model.kind)
    check_backbone(config)
    prep = prepare_training(run, config)
    valid = subset(prep.split.valid, seeded_sample(len(prep.split.valid), config.training.eval_users, config.seed))
    model = build_model(config, prep)
    if config.training.init_from:
        start_from(model, Path(config.training.init_from), prep)

    heldout = heldout_examples(prep.layout, prep.user_ids, valid, backbone.prompt)

    def validate(current: torch.nn.Module) -> dict[str, float]:
        metrics, _ = evaluate_examples(current, prep.layout, prep.user_ids, valid, prep.tries, config.decoding,
                                       ks=(10,), search=backbone.search, prompt=backbone.prompt)
        return {"ndcg@10": float(metrics["ndcg@10"].mean()),
                "loss": heldout_loss(current, heldout, config.decoding.batch_size)}

    info = {**codes_info(prep), "dataset_fingerprint": run.manifest()["dataset"]["fingerprint"],
            "model": config.model.model_dump(), "max_history": config.split.max_history, "seed": config.seed,
            **pretrained_info(model)}
    start = time.perf_counter()
    summary: dict[str, Any] = {"stages": {}}
    for stage in stages(config):
        data, count = stage_data(stage.trains, prep, config)
        settings = config.training if stage.validated else config.training.model_copy(
            update={"epochs": config.training.alignment.epochs, "max_steps": None, "budget_minutes": None})
        output = run.path / (BEST if stage.validated else f"checkpoints/{stage.name}/final.safetensors")
        result = fit(run.path, model, data, settings, validate if stage.validated else None,
                     {**info, "stage": stage.name, "objective": stage.objective}, progress=progress,
                     stage=stage.name, output=output)
        summary["stages"][stage.name] = {**asdict(result), "objective": stage.objective, "train_examples": count}
    summary.update(summary["stages"][NEXT_ITEM])
    summary.update(validation_users=len(valid), wall_seconds=round(time.perf_counter() - start, 3),
                   parameters=sum(p.numel() for p in model.parameters()),
                   trainable_parameters=sum(p.numel() for p in model.parameters() if p.requires_grad))
    run.record("train", summary, config=config.model_dump(mode="json"))
    return summary


def check_backbone(config: Config) -> None:
    """Refuse a recipe whose backbone does not read its layout or train one of its stages' objectives, naming
    those that do."""
    kind, layout = config.model.kind, LAYOUTS.get(config.model.layout)
    if layout.backbones is not None and kind not in layout.backbones:
        raise MmgrError(f"the {kind} backbone does not read model.layout={config.model.layout} (it is for "
                        f"model.kind={' or '.join(layout.backbones)})")
    unsupported = [s for s in stages(config) if not trains_on(s.trains, kind)]
    if unsupported:
        needs = "; ".join(f"{s.objective} trains on model.kind={' or '.join(s.trains.backbones)}" for s in unsupported)
        raise MmgrError(f"the {kind} backbone does not train {', '.join(s.objective for s in unsupported)} ({needs}); "
                        "set training.alignment.objective=none or another model.kind")


def start_from(model: torch.nn.Module, source: Path, prep: Prepared) -> None:
    """Initialise `model` from another run's weights (e.g. pretrained on other domains); the vocabulary must match.
    A stage that has a checkpoint of its own resumes from it instead."""
    path = source / BEST if source.is_dir() else source
    if not path.is_file():
        raise MmgrError(f"training.init_from: {path} does not exist (a run folder with {BEST}, or the file)")
    tensors, info = load_weights(path)
    if info.get("vocabulary_sha256") != codes_info(prep)["vocabulary_sha256"]:
        raise MmgrError(f"training.init_from: {path} was trained with another vocabulary ({info.get('vocab_size')} "
                        f"tokens vs {prep.layout.vocab.size} here); pretrain with the same code levels, codebook "
                        "sizes, modalities and layout")
    try:
        load_state(model, tensors)
    except RuntimeError as exc:                    # same vocabulary, another model size
        raise MmgrError(f"training.init_from: {path} does not fit this model.* size: {exc}") from None


def evaluate_generative(run: RunDir, config: Config, progress: bool = True,
                        splits: tuple[str, ...] = ("valid", "test")) -> dict[str, Any]:
    prep = load_prepared(run, config)
    model, backbone = load_model(run, config, prep), BACKBONES.get(config.model.kind)
    return evaluate_splits(run, prep, splits, protocol_description(config.decoding, DEFAULT_KS), lambda examples:
                           evaluate_examples(model, prep.layout, prep.user_ids, examples, prep.tries, config.decoding,
                                             progress=progress, search=backbone.search, prompt=backbone.prompt))


GENERATIVE = Engine(train_generative, evaluate_generative)
for kind in ("t5", "causal", "item-causal", "llm"):
    ENGINES.register(kind)(GENERATIVE)
