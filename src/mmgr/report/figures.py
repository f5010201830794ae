"""The report's own plots (PNG): test metrics with their intervals, and training curves of every run."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mmgr.report.runs import METRICS, RunSummary


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")                    # files only; set where plots are made, not at import
    import matplotlib.pyplot as plt

    return plt


def metrics_figure(runs: list[RunSummary], path: Path) -> Path:
    """Grouped bars: each metric's test mean per run, with its 95% bootstrap interval."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(METRICS) * max(1, len(runs)) / 2), 3.8))
    width = 0.8 / len(runs)
    x = np.arange(len(METRICS))
    for index, run in enumerate(runs):
        means = np.array([run.test[m] for m in METRICS])
        low = means - np.array([run.intervals[m][0] for m in METRICS])
        high = np.array([run.intervals[m][1] for m in METRICS]) - means
        ax.bar(x + (index - (len(runs) - 1) / 2) * width, means, width, yerr=[low, high], capsize=2,
               label=run.name)
    ax.set_xticks(x, METRICS)
    ax.set_ylabel("test (mean over users)")
    ax.set_title("Test metrics with 95% bootstrap intervals", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def curves_figure(runs: list[RunSummary], path: Path) -> Path:
    """Panels over training steps: validation NDCG@10 and (where recorded) the validation loss of the held-out SIDs
    at each validation, and the training loss, one panel per objective (losses of different objectives are not on one
    scale; the validation loss is next-item cross-entropy for every objective)."""
    plt = _pyplot()
    objectives = sorted({run.method["objective"] for run in runs if run.losses}) or ["next-item"]
    validated = [("valid_ndcg@10", "validation NDCG@10", "Validation NDCG@10 during training")]
    if any("valid_loss" in h for run in runs for h in run.validation):
        validated.append(("valid_loss", "validation loss per SID token", "Validation loss (held-out SIDs)"))
    panels = len(validated) + len(objectives)
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 3.6), squeeze=False)
    valid = dict(zip([key for key, _, _ in validated], axes[0][:len(validated)], strict=True))
    losses = dict(zip(objectives, axes[0][len(validated):], strict=True))
    for index, run in enumerate(runs):                          # one colour per run in every panel
        for key, ax in valid.items():
            points = [(h["step"], h[key]) for h in run.validation if key in h]
            if points:
                ax.plot(*zip(*points, strict=True), marker="o", markersize=3, label=run.name, color=f"C{index}")
        if run.losses:
            losses[run.method["objective"]].plot([s for s, _ in run.losses], [v for _, v in run.losses],
                                                 label=run.name, color=f"C{index}")
    for (key, label, title) in validated:
        valid[key].set(xlabel="step", ylabel=label, title=title)
    for objective, ax in losses.items():
        ax.set(xlabel="step", ylabel="training loss", title=f"Training loss ({objective} objective)")
    for ax in (*valid.values(), *losses.values()):
        if ax.lines:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "nothing logged (the loss is logged every 20 steps)", ha="center", fontsize=9,
                    transform=ax.transAxes)
        ax.title.set_fontsize(10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
