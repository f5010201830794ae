"""Each ranked list of a run that fuses several (SynGR, MQL4GRec: the next item's text SID and its image SID are
decoded apart and their lists fused) against their fusion, on the test users (`evaluation.list_fusion`): measured
once per trained weights (`report/measured.py`) into `analysis/lists.json`, by the decoding path the run's own
evaluation takes, so the fused metrics are the run's test metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmgr.evaluation.modality import LISTS
from mmgr.report.measured import measure_once


def record_lists(run: Path) -> Path | None:
    """`run_lists`, measured once per trained weights into `analysis/lists.json`."""
    return measure_once(run, LISTS, run_lists)


def run_lists(run: Path) -> dict[str, Any] | None:
    """`compare_lists` on the run's test users, or None when it decodes one list."""
    from mmgr.backbones import BACKBONES
    from mmgr.evaluation.list_fusion import compare_lists
    from mmgr.evaluation.protocol import target_lists
    from mmgr.inference.generative import load_model
    from mmgr.inference.prepared import load_prepared
    from mmgr.rundir import RunDir

    folder = RunDir(run)
    config = folder.config()
    prep = load_prepared(folder, config)
    if len(prep.tries) < 2:
        return None
    model, backbone = load_model(folder, config, prep), BACKBONES.get(config.model.kind)
    test = prep.split.test
    lists = target_lists(model, prep.layout, [prep.user_ids[u] for u in test.users.tolist()], test.histories,
                         prep.tries, config.decoding, search=backbone.search, prompt=backbone.prompt)
    return compare_lists(lists, test.targets, config.decoding)
