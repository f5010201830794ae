"""Which modality a trained multimodal run reads (`evaluation.synergy.saliency_shares`), measured once on its own
training rows and kept in the run (`analysis/saliency.json`, which its record keeps and the suite's analyses read).

Measured where the run's histories hold two modalities' codes per item (late fusion, SynGR's bimodal histories; not
MQL4GRec's histories of one modality, one fused SID or a single modality) and its backbone has a token importance
(`models.saliency.importance_measure`). Each modality's appended collision level counts for none: it numbers items,
it describes no content. The file names the weights it measured (their SHA-256), so a run trained again is measured
again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from mmgr.evaluation.modality import SALIENCY, model_settings, read_saliency
from mmgr.evaluation.synergy import saliency_shares, summarize_shares
from mmgr.io import sha256_file, write_json_atomic
from mmgr.layouts.base import Layout, token_modalities
from mmgr.weights import BEST

if TYPE_CHECKING:
    from mmgr.inference.prepared import Prepared

ROWS = 2048           # training rows measured per run (whole batches of the first epoch: a seeded random sample)
NOTHING = {"rows": 0}  # kept for weights with nothing to measure, so they are not loaded again to find that out


def record_saliency(run: Path) -> Path | None:
    """`run_saliency` of a trained run with two modalities or more, written into its `analysis/saliency.json`
    unless that file already names these weights (`NOTHING` when they have nothing to measure); that path, or None
    when the run has nothing to measure."""
    path, weights = run / SALIENCY, run / BEST
    if len(model_settings(run).get("modalities", [])) < 2 or not weights.is_file():
        return None
    digest = sha256_file(weights)
    if not (path.is_file() and json.loads(path.read_text()).get("weights") == digest):
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, {**(run_saliency(run) or NOTHING), "weights": digest})
    return path if read_saliency(run) else None


def run_saliency(run: Path, rows: int = ROWS) -> dict[str, Any] | None:
    """`summarize_shares` over the first `rows` training rows of the run's main objective, or None (histories of
    one modality, no token importance for its backbone, no row with both modalities)."""
    from mmgr.engines.method import stage_data
    from mmgr.inference.generative import load_model
    from mmgr.inference.prepared import load_prepared
    from mmgr.models.saliency import importance_measure
    from mmgr.objectives.base import OBJECTIVES
    from mmgr.rundir import RunDir

    folder = RunDir(run)
    config = folder.config()
    prep = load_prepared(folder, config)
    if not bimodal_histories(prep.layout, prep.user_ids[0]):
        return None
    model = load_model(folder, config, prep, device="cpu")
    measure = importance_measure(model)
    if measure is None:
        return None
    data, _ = stage_data(OBJECTIVES.get(config.training.objective), prep, config)
    batches, seen = [], 0
    for key in data.batches(0):
        if seen >= rows:
            break
        batches.append(data.collate(key))
        seen += len(batches[-1]["input_ids"])
    shares = saliency_shares(model, batches, content_kinds(prep), list(prep.layout.vocab.levels))
    return summarize_shares(shares, measure) if len(next(iter(shares.values()))) else None


def bimodal_histories(layout: Layout, user_id: str) -> bool:
    """Whether the layout writes a history (here of the first two items) for its first target with the code tokens
    of two modalities or more."""
    target = next(iter(layout.targets))
    row = layout.target_input(target, layout.encoder_tokens(user_id, np.arange(2)))
    return len(set(token_modalities(layout.vocab, row).tolist()) - {-1}) >= 2


def content_kinds(prep: Prepared) -> torch.Tensor:
    """(V,) each token id's modality index, with every modality's appended collision level (and specials, prompts
    and users) at -1."""
    vocab = prep.layout.vocab
    kinds = vocab.modality_ids().copy()
    for modality in vocab.levels:
        if prep.codes[modality].appended:
            start = vocab.offsets(modality)[-1]
            kinds[start:start + vocab.levels[modality][-1]] = -1
    return torch.from_numpy(kinds)

