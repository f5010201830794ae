"""A trained generative run as a `Ranker` (`model.kind` t5, causal, item-causal, llm): its model, loaded once and
checked against the codes and vocabulary it was trained on, and trie-constrained beam search per decoding target
(fused when several), through the same `rank_items` as validation and `mmgr evaluate`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from mmgr.backbones import BACKBONES, Backbone
from mmgr.config import Config, DecodingConfig
from mmgr.devices import compute_device
from mmgr.errors import MmgrError
from mmgr.evaluation.protocol import rank_items
from mmgr.inference.explain import describe_items, explained_fields
from mmgr.inference.prepared import Prepared, codes_info, load_prepared, with_new_items
from mmgr.inference.ranker import RANKERS
from mmgr.rundir import RunDir
from mmgr.tokenizers.codes import ModalityCodes
from mmgr.weights import BEST, load_state, load_weights


def build_model(config: Config, prep: Prepared) -> torch.nn.Module:
    """The recipe's backbone for the run's layout (an item-level one is told how many tokens the layout writes per
    history item and per target, and whether a task token precedes the history)."""
    backbone, layout = BACKBONES.get(config.model.kind), prep.layout
    if not backbone.item_level:
        return backbone.build(config.model, layout.vocab, config.seed, 0, 0, 0)
    target_width = max(tokens.shape[1] for tokens in layout.targets.values())
    return backbone.build(config.model, layout.vocab, config.seed, layout.history_width, int(layout.prompted),
                          target_width)


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
    """Refuse adapters trained on another pretrained model than the one `model.llm.pretrained` loads now."""
    now = pretrained_info(model).get("pretrained_fingerprint")
    if now != info.get("pretrained_fingerprint"):
        raise MmgrError(f"{path} was trained on another pretrained model (fingerprint "
                        f"{str(info.get('pretrained_fingerprint'))[:12]}, model.llm.pretrained now loads "
                        f"{str(now)[:12]}); point model.llm.pretrained at the model it was trained on, or retrain")


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

    def rank(self, user_ids: list[str], histories: list[np.ndarray],
             k: int | Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """One beam search per decoding target; with per-row `k` (one target), each row searched with its own
        width, max(k, beam_size), in one search."""
        ks = np.broadcast_to(np.asarray(k, dtype=np.int64), (len(user_ids),))
        top = int(ks.max(initial=1))
        decoding = self.decoding.model_copy(update={"top_k": top, "beam_size": max(top, self.decoding.beam_size)})
        if len(self.data.tries) > 1 and len(set(ks.tolist())) > 1:
            raise ValueError("fused lists depend on their length: rank rows with one k (see batch_key)")
        per_row = np.ndim(k) > 0 and len(self.data.tries) == 1   # fused targets: every row's k is `top`
        row_beams = np.maximum(ks, self.decoding.beam_size) if per_row else None
        return rank_items(self.model, self.data.layout, user_ids, histories, self.data.tries, decoding,
                          search=self.backbone.search, prompt=self.backbone.prompt, row_beams=row_beams)

    def searched(self, k: int, need: int) -> int:
        return max(k, self.decoding.beam_size)             # the evaluation's width

    def batch_key(self, k: int) -> int:
        """0 with one decoding target (a width per row); with several, `k` itself (fusion reads each list's first
        k)."""
        return 0 if len(self.data.tries) == 1 else k

    def decoding_tables(self) -> dict[str, np.ndarray]:
        return dict(self.data.layout.targets)

    def explain(self, items: list[int]) -> list[dict[str, str]]:
        """Per item index, the text the model writes from the item's SID for each field it was trained to explain
        (TriAlignGR's SID -> title / interests / visual description)."""
        if not self.explains:
            raise MmgrError("this run's model cannot explain items: train it with training.objective=tmt and a "
                            "sid->title (or sid->interests, sid->visdesc) task in training.tmt.tasks")
        return describe_items(self.model, self.data.layout, items, self.explains, self.max_text_tokens)

    def extended(self, codes: dict[str, ModalityCodes], items: pa.Table) -> GenerativeRanker:
        """This ranker over the catalog plus `items` (their codes last in `codes`); same model and vocabulary."""
        return GenerativeRanker(with_new_items(self.data, codes, items), self.model, self.backbone,
                                self.decoding, self.explains, self.max_text_tokens)


def generative_ranker(run: RunDir, config: Config) -> GenerativeRanker:
    prep = load_prepared(run, config)
    return GenerativeRanker(prep, load_model(run, config, prep), BACKBONES.get(config.model.kind), config.decoding,
                            explained_fields(config, prep.layout.vocab), config.training.tmt.max_text_tokens)


for kind in ("t5", "causal", "item-causal", "llm"):
    RANKERS.register(kind)(generative_ranker)
