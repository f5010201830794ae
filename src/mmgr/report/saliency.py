"""Which modality a trained multimodal run reads (`evaluation.synergy.saliency_shares`), measured once on its own
training rows and kept in the run (`analysis/saliency.json`, which its record keeps and the suite's analyses read).

Measured where the run's histories hold two modalities' codes per item (late fusion, SynGR's bimodal histories; not
MQL4GRec's histories of one modality, one fused SID or a single modality) and its backbone has a token importance
(`models.saliency.importance_measure`). Each modality's appended collision level counts for none: it numbers items,
it describes no content. Measured once per trained weights (`report/measured.py`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from mmgr.evaluation.modality import SALIENCY
from mmgr.evaluation.synergy import saliency_shares, summarize_shares
from mmgr.layouts.base import Layout, token_modalities
from mmgr.report.measured import measure_once

if TYPE_CHECKING:
    from mmgr.inference.prepared import Prepared

ROWS = 2048           # training rows measured per run (whole batches of the first epoch: a seeded random sample)


def record_saliency(run: Path) -> Path | None:
    """`run_saliency`, measured once per trained weights (`measured.measure_once`) into `analysis/saliency.json`."""
    return measure_once(run, SALIENCY, run_saliency)


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

