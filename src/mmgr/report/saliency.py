"""Which modality a trained multimodal run reads (`evaluation.synergy.saliency_shares`), measured once on its own
training rows and kept in the run (`analysis/saliency.json`, which its record keeps and the suite's analyses read).

Measured on the training rows that are histories holding two modalities' codes (late fusion, SynGR's bimodal
histories, the SynGR rows of SynGR as released; not MQL4GRec's histories of one modality or its item translations,
one fused SID or a single modality) where the backbone has a token importance (`models.saliency.importance_measure`).
Each modality's appended collision level counts for none: it numbers items, it describes no content. Measured once
per trained weights (`report/measured.py`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from mmgr.evaluation.modality import SALIENCY
from mmgr.evaluation.synergy import history_rows, saliency_shares, summarize_shares
from mmgr.layouts.base import translation_prompts
from mmgr.report.measured import measure_once

if TYPE_CHECKING:
    from mmgr.inference.prepared import Prepared

ROWS = 2048           # history rows measured per run (from the first epoch's batches: a seeded random sample)


def record_saliency(run: Path) -> Path | None:
    """`run_saliency`, measured once per trained weights (`measured.measure_once`) into `analysis/saliency.json`."""
    return measure_once(run, SALIENCY, run_saliency)


def run_saliency(run: Path, rows: int = ROWS) -> dict[str, Any] | None:
    """`summarize_shares` over the first `rows` training rows of the run's main objective that are histories holding
    codes of every modality (`history_rows`), or None (no such row in its first epoch, no token importance for its
    backbone)."""
    from mmgr.engines.method import stage_data
    from mmgr.inference.generative import load_model
    from mmgr.inference.prepared import load_prepared
    from mmgr.models.saliency import importance_measure
    from mmgr.objectives.base import OBJECTIVES
    from mmgr.rundir import RunDir

    folder = RunDir(run)
    config = folder.config()
    prep = load_prepared(folder, config)
    kinds, modalities = content_kinds(prep), list(prep.layout.vocab.levels)
    data, _ = stage_data(OBJECTIVES.get(config.training.objective), prep, config)
    translations = torch.from_numpy(translation_prompts(prep.layout.vocab))
    batches = history_rows((data.collate(key) for key in data.batches(0)), kinds, len(modalities), translations, rows)
    if not batches:
        return None
    model = load_model(folder, config, prep, device="cpu")
    measure = importance_measure(model)
    if measure is None:
        return None
    shares = saliency_shares(model, batches, kinds, modalities)
    return summarize_shares(shares, measure) if len(next(iter(shares.values()))) else None


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

