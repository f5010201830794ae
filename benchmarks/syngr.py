"""SynGR (arXiv 2605.18920) on one dataset: TIGER-text, TIGER-image, MGR-LF++, SynGR and its three ablations (w/o SM,
w/o UN, w/o SCL), same data, codes, seed and step budget for every row (the rows of `benchmarks/mgr.py`, shared and
reused); paired bootstrap against TIGER-text and, for the SynGR rows, against MGR-LF++ (ablations also against
SynGR); HR@10 by planted user kind (synthetic world); the distribution of attention mass on text vs image tokens; a
PID-style split of SynGR's hits by the unimodal models' hits; training cost per epoch against MGR-LF++ and the
saliency pass's share of a step.

    python benchmarks/syngr.py --dataset synthetic --steps 1000 --patience 3
    python benchmarks/syngr.py --dataset ml-100k --steps 800 --patience 3
    python benchmarks/syngr.py --dataset arts --steps 800 --patience 3

SynGR's authors pretrain on six other Amazon domains before fine-tuning (lr 5e-4, up to 200 epochs); that data is not
available here, so every row trains from scratch under the same CPU budget and settings as the MGR rows (lr 3e-3).
Writes benchmarks/results/quality-<dataset>-<row>.json per row, syngr-<dataset>-summary.json, and PNG plots.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import mgr  # noqa: E402

from mmgr.engines.method import stage_data  # noqa: E402
from mmgr.evaluation.modality import analyse_runs, per_user, plot_summary  # noqa: E402
from mmgr.evaluation.protocol import subset  # noqa: E402
from mmgr.evaluation.significance import compare_runs  # noqa: E402
from mmgr.evaluation.synergy import attention_shares, pid_estimate, plot_attention_shares  # noqa: E402
from mmgr.inference.generative import load_model  # noqa: E402
from mmgr.inference.prepared import load_prepared  # noqa: E402
from mmgr.models.saliency import token_importance  # noqa: E402
from mmgr.objectives.base import OBJECTIVES  # noqa: E402
from mmgr.rundir import RunDir  # noqa: E402
from mmgr.training.loop import seeded_sample  # noqa: E402

SYNGR = ["model.layout=bimodal", "model.modalities=[text,image]", "model.switch_tokens=false",
         "training.alignment=none", "training.objective=syngr"]
VARIANTS = {
    **{name: mgr.VARIANTS[name] for name in ("tiger-text", "tiger-image", "mgr-lfpp")},
    "syngr": SYNGR,
    "syngr-no-sm": [*SYNGR, "training.syngr.masking=random"],
    "syngr-no-un": [*SYNGR, "training.syngr.unimodal_view=false"],
    "syngr-no-scl": [*SYNGR, "training.syngr.synergy_weight=0"],
}
REFERENCE = {**(mgr.REFERENCES["amazon-arts-2018"]), "syngr_target": {
    "note": "SynGR reports +9% on average over the best published row (MACRec); on Arts that is about",
    "hr@10": 0.145, "ndcg@10": 0.104}}


def attention(run: RunDir, users: int, seed: int) -> dict[str, Any]:
    """Per-user share of SynGR's history attention on text tokens (validation users), with summary numbers."""
    config = run.config()
    prep = load_prepared(run, config)
    model = load_model(run, config, prep, device="cpu")
    valid = subset(prep.split.valid, seeded_sample(len(prep.split.valid), users, seed))
    shares = attention_shares(model, prep.layout, [prep.user_ids[u] for u in valid.users.tolist()],
                              valid.histories)["text"]
    return {"users": len(shares), "text_share_mean": float(shares.mean()),
            "text_share_quantiles": {q: float(np.quantile(shares, q)) for q in (0.1, 0.5, 0.9)},
            "text_dominant_users": float((shares > 0.5).mean()), "text_shares": [round(float(s), 4) for s in shares]}


def step_profile(run: RunDir, batches: int = 6) -> dict[str, Any]:
    """Seconds per SynGR training step (forward + backward of the three views, bf16 autocast as in training) and
    of its saliency pass alone, on the run's first training batches."""
    config = run.config()
    prep = load_prepared(run, config)
    model = load_model(run, config, prep, device="cpu").train()   # a CPU measurement
    data, _ = stage_data(OBJECTIVES.get("syngr"), prep, config)
    step, saliency = [], []
    for index in data.batches(0)[:batches]:
        batch = data.collate(index)
        started = time.perf_counter()
        token_importance(model, batch["input_ids"], batch["attention_mask"])
        saliency.append(time.perf_counter() - started)
        started = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = data.loss(model, batch)
        loss.backward()
        model.zero_grad(set_to_none=True)
        step.append(time.perf_counter() - started)
    return {"batches": batches, "step_seconds": float(np.median(step)), "saliency_seconds": float(np.median(saliency)),
            "saliency_share_of_step": float(np.median(saliency) / np.median(step))}


def cost(rows: dict[str, Any]) -> dict[str, Any]:
    """Training seconds per step and per epoch (train examples / batch 128) of each row, against MGR-LF++.
    A resumed row's train_seconds cover only the steps its last process ran (steps - resumed_from_step)."""
    out = {}
    for name, row in rows.items():
        train = row["train"]
        per_step = train["train_seconds"] / max(train["steps"] - (train.get("resumed_from_step") or 0), 1)
        out[name] = {"seconds_per_step": round(per_step, 4), "train_examples": train["train_examples"],
                     "seconds_per_epoch": round(per_step * train["train_examples"] / 128, 1)}
    if "mgr-lfpp" in out:
        for name in out:
            out[name]["epoch_cost_vs_mgr_lfpp"] = round(out[name]["seconds_per_epoch"] /
                                                        out["mgr-lfpp"]["seconds_per_epoch"], 2)
    return out


def pid(folder: Path, kinds: dict[str, str] | None) -> dict[str, Any]:
    """PID-style split of SynGR's test HR@10 hits by TIGER-text's and TIGER-image's (overall and per user kind)."""
    rows = {name: per_user(folder / name) for name in ("syngr", "tiger-text", "tiger-image")}
    users = rows["syngr"]["user_id"]
    if any(rows[name]["user_id"] != users for name in rows):
        raise SystemExit("the runs evaluated different users; rerun them on the same data")
    hits = {name: np.array(row["hr@10"]) > 0 for name, row in rows.items()}
    out = {"overall": pid_estimate(hits["syngr"], hits["tiger-text"], hits["tiger-image"])}
    if kinds:
        labels = np.array([kinds[u] for u in users])
        out["by_user_kind"] = {kind: pid_estimate(*(hits[n][labels == kind] for n in ("syngr", "tiger-text",
                                                                                    "tiger-image")))
                               for kind in sorted(set(labels.tolist()))}
    return out


def main() -> None:
    args = mgr.parser_for(__doc__.split("\n")[0], list(VARIANTS), list(VARIANTS)).parse_args()
    name = mgr.DATASETS[args.dataset][0]
    started = time.perf_counter()
    rows, folder, base = mgr.run_variants(args, VARIANTS)
    for variant in rows:
        if variant.startswith("syngr") and "mgr-lfpp" in rows:
            rows[variant]["vs_mgr_lfpp"] = compare_runs(folder / "mgr-lfpp", folder / variant, "test",
                                                        ("ndcg@10", "hr@10", "mrr@20"), resamples=2000)
        if variant.startswith("syngr-") and "syngr" in rows:   # an ablation against the full method
            rows[variant]["vs_syngr"] = compare_runs(folder / "syngr", folder / variant, "test",
                                                     ("ndcg@10", "hr@10", "mrr@20"), resamples=2000)
    world = base.path / "raw" / "world.json"
    kinds = ({u: info["kind"] for u, info in json.loads(world.read_text())["users"].items()}
             if world.is_file() else None)
    analyses = {**analyse_runs({v: folder / v for v in rows}, base.path), "cost": cost(rows)}
    if "syngr" in rows:
        analyses["attention"] = attention(RunDir(folder / "syngr"), 500, 0)
        analyses["step_profile"] = step_profile(RunDir(folder / "syngr"))
        if {"tiger-text", "tiger-image"} <= set(rows):
            analyses["pid"] = pid(folder, kinds)
    reference = REFERENCE if name == "amazon-arts-2018" else None
    summary = {"rows": rows, "analyses": analyses, "reference": reference,
               "budget": {"next_item_steps": args.steps, "batch_size": 128, "patience": args.patience,
                          "note": "equal step budgets, from scratch (no pretraining on other domains: that data is "
                                  "not available here); a SynGR step trains 3 views of 128 examples"}}
    plots = plot_summary(summary, common.RESULTS / f"syngr-{name}")
    common.write_result("syngr", name, "summary", summary, split="test", wall_seconds=time.perf_counter() - started,
                        config={"shared": mgr.SHARED, "patience": args.patience,
                                "variants": {v: VARIANTS[v] for v in rows},
                                "codebook_size": mgr.CODEBOOK[args.dataset], "max_history": args.history,
                                "plots": [p.name for p in plots] + ["syngr-attention.png"]})
    plot_all_attention()


def plot_all_attention() -> None:
    """One histogram per dataset that has a SynGR summary: share of history attention on text tokens."""
    shares = {}
    for path in sorted(common.RESULTS.glob("syngr-*-summary.json")):
        found = json.loads(path.read_text())["metrics"]["analyses"].get("attention")
        if found:
            shares[path.name.removeprefix("syngr-").removesuffix("-summary.json")] = np.array(found["text_shares"])
    if shares:
        plot_attention_shares(shares, common.RESULTS / "syngr-attention.png")


if __name__ == "__main__":
    main()
