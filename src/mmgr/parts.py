"""Every named part of mmgr: for each registry, which module registers which name.

The one list of component names. `Registry.get(name)` imports the name's module on first use; config validation
and `Registry.names()` read the names from here without importing any part (no torch). A module of the package
registers exactly the names mapped to it; names registered from outside the package join this map at run time.
"""

from __future__ import annotations

PARTS: dict[str, dict[str, str]] = {
    "data format": {"amazon2014": "mmgr.data.formats.amazon", "amazon2023": "mmgr.data.formats.amazon",
                    "generic": "mmgr.data.formats.generic", "lcrec": "mmgr.data.formats.lcrec",
                    "p5": "mmgr.data.formats.p5", "recbole": "mmgr.data.formats.recbole"},
    "feature fusion": {name: "mmgr.encoders.fusion" for name in ("concat", "projection", "joint")},
    "tokenizer": {"rq-kmeans": "mmgr.tokenizers.rq_kmeans", "rq-vae": "mmgr.tokenizers.rqvae"},
    "layout": {"single": "mmgr.layouts.base", "late-fusion": "mmgr.layouts.late_fusion",
               "bimodal": "mmgr.layouts.bimodal",
               **{name: "mmgr.layouts.unimodal" for name in ("unimodal", "unimodal-wide")}},
    "model kind": {**{name: "mmgr.engines.generative" for name in ("t5", "causal", "item-causal", "llm")},
                   "sasrec": "mmgr.engines.sasrec"},
    "ranker": {**{name: "mmgr.inference.generative" for name in ("t5", "causal", "item-causal", "llm")},
               "sasrec": "mmgr.inference.sasrec"},
    "backbone": {name: "mmgr.backbones" for name in ("t5", "causal", "item-causal", "llm")},
    "training objective": {"next-item": "mmgr.objectives.next_item", "syngr": "mmgr.objectives.syngr",
                           "tmt": "mmgr.objectives.tmt", "mql4grec": "mmgr.objectives.multitask",
                           "syngr-released": "mmgr.objectives.syngr_released"},
    "alignment objective": {name: "mmgr.objectives.alignment" for name in ("translate", "infonce")},
    "fusion rule": {name: "mmgr.decoding.fusion" for name in ("mean-bonus", "rrf", "max")},
}


def part_names(kind: str) -> list[str]:
    """The registered names of `kind`, sorted; nothing is imported."""
    return sorted(PARTS[kind])
