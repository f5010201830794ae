"""The generative engine (`model.kind: t5`, `causal` or `llm`, see `training/backbones.py`): train, evaluate and rank
for every method composed in `mmgr.training.method` (TIGER, MGR-EF, MGR-LF, MGR-LF++ and its ablations).

train    -> vocabulary.json, [checkpoints/align/{last,final}.safetensors], model.safetensors (best validation epoch
            of the next-item stage), checkpoints/next-item/last.safetensors, logs/<stage>/, manifest `train`
evaluate -> results.json (validation and test metrics) + per_user_<split>.parquet, manifest `evaluate`
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from mmgr.config import Config, DecodingConfig
from mmgr.devices import compute_device
from mmgr.errors import MmgrError
from mmgr.evaluation.metrics import DEFAULT_KS
from mmgr.evaluation.protocol import evaluate_examples, protocol_description, rank_items, subset
from mmgr.rundir import RunDir
from mmgr.tokenizers.codes import ModalityCodes
from mmgr.training.backbones import BACKBONES, Backbone
from mmgr.training.checkpoint import load_state, load_weights
from mmgr.training.loop import BEST, NEXT_ITEM, fit, seeded_sample
from mmgr.training.method import Prepared, codes_info, prepare, stages, with_new_items
from mmgr.training.objectives import trains_on
from mmgr.training.rundata import evaluate_splits
from mmgr.training.stage import ENGINES, Engine
from mmgr.training.tmt import describe_items, explained_fields


def train_generative(run: RunDir, config: Config, progress: bool = True) -> dict[str, Any]:
    backbone = BACKBONES.get(config.model.kind)
    check_backbone(config)
    prep = prepare(run, config, for_training=True)
    valid = subset(prep.split.valid, seeded_sample(len(prep.split.valid), config.training.eval_users, config.seed))
    model = build_model(config, prep)
    if config.training.init_from:
        start_from(model, Path(config.training.init_from), prep)

    def validate(current: torch.nn.Module) -> float:
        metrics, _ = evaluate_examples(current, prep.layout, prep.user_ids, valid, prep.tries, config.decoding,
                                       ks=(10,), search=backbone.search, prompt=backbone.prompt)
        return float(metrics["ndcg@10"].mean())

    info = {**codes_info(prep), "dataset_fingerprint": run.manifest()["dataset"]["fingerprint"],
            "model": config.model.model_dump(), "max_history": config.split.max_history, "seed": config.seed,
            **pretrained_info(model)}
    start = time.perf_counter()
    summary: dict[str, Any] = {"stages": {}}
    for stage in stages(config):
        data, count = stage.trains.train_data(prep, config)
        settings = config.training if stage.validated else config.training.model_copy(
            update={"epochs": config.training.alignment_epochs, "max_steps": None, "budget_minutes": None})
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


def build_model(config: Config, prep: Prepared) -> torch.nn.Module:
    """The recipe's backbone for the run's layout (told how many tokens the layout writes per history item)."""
    backbone, targets = BACKBONES.get(config.model.kind), list(prep.layout.targets)
    if backbone.one_target and targets != ["item"]:
        raise MmgrError(f"model.kind={config.model.kind} generates one token tuple per item; model.layout="
                        f"{config.model.layout} asks for {len(targets)} targets ({', '.join(targets)}); use "
                        "model.kind=t5")
    return backbone.build(config.model, prep.layout.vocab, config.seed, prep.layout.item_tokens.shape[1])


def check_backbone(config: Config) -> None:
    """Refuse a recipe whose backbone does not train one of its stages' objectives, naming those that do."""
    kind = config.model.kind
    unsupported = [s for s in stages(config) if not trains_on(s.trains, kind)]
    if unsupported:
        needs = "; ".join(f"{s.objective} trains on model.kind={' or '.join(s.trains.backbones)}" for s in unsupported)
        raise MmgrError(f"the {kind} backbone does not train {', '.join(s.objective for s in unsupported)} ({needs}); "
                        "set training.alignment=none or another model.kind")


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


def load_model(run: RunDir, config: Config, prep: Prepared,
               device: torch.device | str | None = None) -> torch.nn.Module:
    """The run's trained model in eval mode, on `device` (default: the GPU it trains on, else the CPU)."""
    tensors, info = load_weights(run.path / BEST)
    if {key: info.get(key) for key in codes_info(prep)} != codes_info(prep):
        raise MmgrError(f"{run.path / BEST} was trained with another tokenizer or vocabulary "
                        f"(vocab {info.get('vocab_size')} vs {prep.layout.vocab.size}); re-run `mmgr train`")
    model = build_model(config, prep)
    load_state(model, tensors)
    check_pretrained(model, info, run.path / BEST)
    return model.to(device or compute_device(config.training.accelerator)).eval()


def pretrained_info(model: torch.nn.Module) -> dict[str, str]:
    """What a weight file records of the frozen pretrained model it adapts (`llm` backbone); {} for the others."""
    fingerprint = getattr(model, "fingerprint", None)
    return {"pretrained_fingerprint": fingerprint} if fingerprint else {}


def check_pretrained(model: torch.nn.Module, info: dict[str, Any], path: Path) -> None:
    """Refuse adapters trained on another pretrained model than the one `model.pretrained` loads now."""
    now = pretrained_info(model).get("pretrained_fingerprint")
    if now != info.get("pretrained_fingerprint"):
        raise MmgrError(f"{path} was trained on another pretrained model (fingerprint "
                        f"{str(info.get('pretrained_fingerprint'))[:12]}, model.pretrained now loads "
                        f"{str(now)[:12]}); point model.pretrained at the model it was trained on, or retrain")


def evaluate_generative(run: RunDir, config: Config, progress: bool = True,
                        splits: tuple[str, ...] = ("valid", "test")) -> dict[str, Any]:
    prep = prepare(run, config)
    model, backbone = load_model(run, config, prep), BACKBONES.get(config.model.kind)
    return evaluate_splits(run, prep, splits, protocol_description(config.decoding, DEFAULT_KS), lambda examples:
                           evaluate_examples(model, prep.layout, prep.user_ids, examples, prep.tries, config.decoding,
                                             progress=progress, search=backbone.search, prompt=backbone.prompt))


@dataclass
class GenerativeRanker:
    """A trained generative run: trie-constrained beam search per decoding target (fused when several), through the
    same `rank_items` as validation and `mmgr evaluate`."""

    data: Prepared
    model: torch.nn.Module
    backbone: Backbone
    decoding: DecodingConfig
    explains: tuple[str, ...] = ()        # text fields the model was trained to write from a SID (tmt)
    max_text_tokens: int = 32

    def rank(self, user_ids: list[str], histories: list[np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
        decoding = self.decoding.model_copy(update={"top_k": k, "beam_size": max(k, self.decoding.beam_size)})
        return rank_items(self.model, self.data.layout, user_ids, histories, self.data.tries, decoding,
                          search=self.backbone.search, prompt=self.backbone.prompt)

    def batch_key(self, k: int) -> int:
        """The beam width for `k`; with several decoding targets, `k` itself (fusion reads each list's first k)."""
        return max(k, self.decoding.beam_size) if len(self.data.tries) == 1 else k

    def decoding_tables(self) -> dict[str, np.ndarray]:
        return dict(self.data.layout.targets)

    def explain(self, items: list[int]) -> list[dict[str, str]]:
        """Per item index, the text the model writes from the item's SID for each field it was trained to explain
        (TriAlignGR's SID -> title / interests / visual description)."""
        if not self.explains:
            raise MmgrError("this run's model cannot explain items: train it with training.objective=tmt and a "
                            "sid->title (or sid->interests, sid->visdesc) task in training.tmt.tasks")
        return describe_items(self.model, self.data.layout, items, self.explains, self.max_text_tokens)

    def extended(self, config: Config, codes: dict[str, ModalityCodes], items: pa.Table) -> GenerativeRanker:
        """This ranker over the catalog plus `items` (their codes last in `codes`); same model and vocabulary."""
        return GenerativeRanker(with_new_items(self.data, config, codes, items), self.model, self.backbone,
                                self.decoding, self.explains, self.max_text_tokens)


def generative_ranker(run: RunDir, config: Config) -> GenerativeRanker:
    prep = prepare(run, config)
    return GenerativeRanker(prep, load_model(run, config, prep), BACKBONES.get(config.model.kind), config.decoding,
                            explained_fields(config), config.training.tmt.max_text_tokens)


GENERATIVE = Engine(train_generative, evaluate_generative, generative_ranker)
ENGINES.register("t5")(GENERATIVE)
ENGINES.register("causal")(GENERATIVE)
ENGINES.register("item-causal")(GENERATIVE)
ENGINES.register("llm")(GENERATIVE)
