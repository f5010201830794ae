"""Published results on exactly the data and protocol mmgr reproduces, to show beside our numbers.

A table applies to a dataset only when its statistics (users, items, interactions after the published
preprocessing) are the published ones: the report puts published numbers next to ours only then. HR@K here is
Recall@K of the papers (one held-out item per user, full ranking).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class PublishedTable:
    dataset: str
    stats: tuple[int, int, int]                     # users, items, interactions
    source: str
    rows: dict[str, dict[str, float]] = field(default_factory=dict)

    def reference(self) -> dict[str, Any]:
        """The `reference` block of a benchmark results file."""
        return {"source": self.source, "metrics": self.rows}


TABLES = (
    PublishedTable(
        "amazon-beauty-2014", (22_363, 12_101, 198_502),
        "TIGER paper (Rajput et al. 2023), Beauty, P5 / S3-Rec split, leave-one-out full ranking; SASRec from "
        "TIGER's table",
        {"tiger": {"hr@5": .0454, "ndcg@5": .0321, "hr@10": .0648, "ndcg@10": .0384},
         "sasrec": {"hr@5": .0387, "ndcg@5": .0249, "hr@10": .0605, "ndcg@10": .0318}}),
    PublishedTable(
        "amazon-arts-2018", (22_171, 9_416, 174_079),
        "MACRec paper, Table 2 (leave-one-out full ranking, mean of 5 seeds; same MQL4GRec text and image SIDs)",
        {"tiger": {"hr@1": .0532, "hr@5": .0894, "hr@10": .1167, "ndcg@5": .0718, "ndcg@10": .0806},
         "mql4grec": {"hr@1": .0626, "hr@5": .0997, "hr@10": .1254, "ndcg@5": .0816, "ndcg@10": .0898},
         "macrec": {"hr@1": .0685, "hr@5": .1046, "hr@10": .1329, "ndcg@5": .0868, "ndcg@10": .0953}}),
)


def table(dataset: str) -> PublishedTable:
    for known in TABLES:
        if known.dataset == dataset:
            return known
    raise KeyError(f"no published table for {dataset!r} (have {', '.join(t.dataset for t in TABLES)})")


def matching(stats: dict[str, Any]) -> PublishedTable | None:
    """The published table whose dataset has exactly these statistics (users, items, interactions), if any."""
    key = (stats.get("users"), stats.get("items"), stats.get("interactions"))
    return next((t for t in TABLES if t.stats == key), None)
