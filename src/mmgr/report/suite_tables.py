"""Markdown tables of results for README and docs pages: a suite summary (`mmgr bench --suite`) as a table with its
published rows, claims and analyses, and the small formatting helpers the page generator (`docs/tables.py`) shares."""

from __future__ import annotations

from typing import Any

from mmgr.report.analyses import analysis_sections
from mmgr.report.document import claims_table, difference, unfinished_text

DASH = "—"


def num(value: float | None, digits: int = 4) -> str:
    return DASH if value is None else f"{value:.{digits}f}"


def count(value: float | None) -> str:
    return DASH if value is None else f"{round(value):,}"


def metric(metrics: dict[str, float], name: str) -> float | None:
    """hr@k and recall@k are the same number with one target; results files use either name."""
    if name in metrics:
        return metrics[name]
    other = name.replace("hr@", "recall@") if name.startswith("hr@") else name.replace("recall@", "hr@")
    return metrics.get(other)


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


SUITE_METRICS = ["hr@1", "hr@5", "hr@10", "ndcg@5", "ndcg@10"]


def render_suite(summary: dict[str, Any] | None) -> str:
    """A `mmgr bench --suite` summary.json as a table, then its published rows; `None`: not run yet."""
    if summary is None:
        return "Not run yet."
    rows = []
    for row in summary["rows"]:
        cells = [row["name"], ", ".join(map(str, row["seeds"]))]
        for m in SUITE_METRICS:
            value = num(row["metrics"][m])
            if len(row["seeds"]) > 1:
                value += f" ± {row['metrics_sd'][m]:.4f}"
            cells.append(value)
        cells.append(" / ".join(str(e) if e is not None else DASH for e in row["epochs"]))
        cells.append(" / ".join(count(s) for s in row["samples_seen"]))
        cells.append(" / ".join(f"{s / 60:.0f}" for s in row["train_seconds"]))
        gains = [g for g in row.get("late_gain", []) if g is not None]
        monitored = " loss" if row.get("monitor") == "loss" else ""
        cells.append(("yes" if row["converged"] else "NO") + (f" ({gains[0]:+.4f}{monitored})" if gains else ""))
        cells.append(DASH if row.get("vs_baseline") is None else difference(row["vs_baseline"], "ndcg@10"))
        rows.append(cells)
    header = ["row", "seeds", "HR@1", "HR@5", "HR@10", "NDCG@5", "NDCG@10", "epochs", "samples seen", "training min",
              "converged (late gain)",
              f"NDCG@10 - {summary['baseline']} [95% CI], p"]
    parts = [table(header, rows)]
    published = summary.get("published")
    if published:
        prows = [[f"{name} (published)", *(num(values.get(m)) for m in SUITE_METRICS)]
                 for name, values in published["rows"].items()]
        parts.append(table(["published row", "HR@1", "HR@5", "HR@10", "NDCG@5", "NDCG@10"], prows))
        parts.append(f"Published: {published['source']}.")
    if summary.get("unfinished"):
        parts.append(f"Not finished yet, so not in this table: {unfinished_text(summary)}.")
    if summary.get("claims"):
        header, cells = claims_table(summary)
        parts.append("Published claims tested on these rows (paired bootstrap over the test users on each row's "
                     "seed-averaged metrics; verdict from the NDCG@10 interval: holds above 0, reversed below 0, not "
                     f"shown across 0):\n\n{table(header, cells)}")
    for _, heading, (header, cells) in analysis_sections(summary.get("analyses") or {}):
        parts.append(f"{heading}, each row's first seed:\n\n{table(header, cells)}")
    seeds = sorted({s for row in summary["rows"] for s in row["seeds"]})
    parts.append(f"Dataset {summary['dataset']}, seeds {', '.join(map(str, seeds))}, device {summary['device']}, "
                 f"commit {summary['commit'][:10]}: `{summary['command']}`")
    return "\n\n".join(parts)
