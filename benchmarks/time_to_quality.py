"""Time to quality: validation NDCG@10 against training seconds and samples seen, for the T5 (TIGER) backbone and
the causal backbone on the same SIDs and validation users, measured side by side in one run.

    python benchmarks/time_to_quality.py --world successor --steps 400
    python benchmarks/time_to_quality.py --world beauty --steps 600

Worlds: `successor` = 1,000 items on 40 cycles, 3,000 users whose next item is fixed by the last one (random distinct
3 x 16 SIDs); `beauty` = Amazon Beauty (P5 split) with LETTER's published 4-level SIDs. Variants (same model size:
d_model 128, 4 layers (T5: 4 + 4), 4 heads x 32, d_ff 1024):
t5 with the project defaults (lr 2e-3, warmup 300, dropout 0.1, 2,000 user buckets), t5 with each of the probe's
levers alone and all together (lr 3e-3, warmup 20, dropout 0, no user buckets), the tuned t5 compiled
(`training.graph=compile`), the tuned t5 shown only the last history item (a diagnosis: how fast T5 learns once it
need not find the latest item among the others), the tuned t5 with recency embeddings (`model.recency_embeddings=64`,
eager and compiled), the causal backbone with the defaults and with the tuned levers (and with
`model.hidden_dropout=0.3`), and the item-level causal backbone (`model.kind=item-causal`) with the tuned levers (and
with hidden dropout). Every variant gets the
same step budget and batch size; validation every `--eval-every` steps on the same fixed users. Writes
benchmarks/results/time_to_quality-<world>-backbones.json and a PNG of the curves; the test metrics of each
variant's best weights are in the JSON too.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

from mmgr.config import load_config  # noqa: E402
from mmgr.data.importer import import_into_run  # noqa: E402
from mmgr.engines.base import evaluate_run, train_run  # noqa: E402
from mmgr.rundir import RunDir  # noqa: E402
from mmgr.tokenizers.codes import ModalityCodes  # noqa: E402
from mmgr.tokenizers.stage import import_codes  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MODEL = ["model.d_model=128", "model.num_layers=4", "model.num_decoder_layers=4", "model.num_heads=4",
         "model.d_kv=32", "model.d_ff=1024", "model.layout=single", "model.modalities=[text]"]  # Llama: 128 % heads
DEFAULTS = ["model.dropout=0.1", "model.user_buckets=2000", "training.lr=0.002", "training.warmup_steps=300"]
TUNED = ["model.dropout=0.0", "model.user_buckets=0", "training.lr=0.003", "training.warmup_steps=20"]
VARIANTS = {
    "t5-defaults": ["model.kind=t5", *DEFAULTS],
    "t5-no-dropout": ["model.kind=t5", *DEFAULTS, "model.dropout=0.0"],
    "t5-no-user-tokens": ["model.kind=t5", *DEFAULTS, "model.user_buckets=0"],
    "t5-lr3e-3-warmup20": ["model.kind=t5", *DEFAULTS, "training.lr=0.003", "training.warmup_steps=20"],
    "t5-tuned": ["model.kind=t5", *TUNED],
    "t5-tuned-compiled": ["model.kind=t5", *TUNED, "training.graph=compile"],
    "t5-tuned-last-item-only": ["model.kind=t5", *TUNED, "split.max_history=1"],   # diagnosis, not a method
    "t5-tuned-recency": ["model.kind=t5", *TUNED, "model.recency_embeddings=64"],
    "t5-tuned-recency-compiled": ["model.kind=t5", *TUNED, "model.recency_embeddings=64", "training.graph=compile"],
    "causal-defaults": ["model.kind=causal", *DEFAULTS],
    "causal-tuned": ["model.kind=causal", *TUNED],
    "causal-tuned-hidden-dropout": ["model.kind=causal", *TUNED, "model.hidden_dropout=0.3"],
    "item-causal-tuned": ["model.kind=item-causal", *TUNED],
    "item-causal-tuned-hidden-dropout": ["model.kind=item-causal", *TUNED, "model.hidden_dropout=0.3"],
}


def successor_world(folder: Path) -> Path:
    """1,000 items on 40 cycles; 3,000 users walk them from random starts (6-12 items)."""
    data = folder / "successor-data"
    if (data / "items.csv").is_file():
        return data
    data.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    order = rng.permutation(1000)
    successor = np.empty(1000, dtype=np.int64)
    for cycle in np.array_split(order, 40):
        successor[cycle] = np.roll(cycle, -1)
    rows = [["user_id", "item_id", "timestamp"]]
    for user in range(3000):
        item = int(rng.integers(1000))
        for t in range(int(rng.integers(6, 13))):
            rows.append([f"u{user:04d}", f"i{item:04d}", t])
            item = int(successor[item])
    with open(data / "interactions.csv", "w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    with open(data / "items.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([["item_id", "title"], *([f"i{i:04d}", f"item {i}"] for i in range(1000))])
    return data


def base_run(world: str, folder: Path) -> RunDir:
    run = RunDir(folder / "base")
    if run.exists():
        return run
    if world == "successor":
        config = load_config(overrides=["data.format=generic", f"data.path={successor_world(folder)}",
                                        "split.max_history=20"])
        import_into_run(config, run.path)
        grid = np.array([(a, b, c) for a in range(16) for b in range(16) for c in range(16)])
        codes = grid[np.random.default_rng(1).permutation(len(grid))[:1000]]
        ModalityCodes("text", codes, [16, 16, 16], np.zeros(1000, dtype=bool), {"collisions": "none"}).save(
            run.path / "codes" / "text.safetensors", run.manifest()["dataset"]["fingerprint"])
    else:
        config = load_config([ROOT / "configs" / "beauty.yaml"],
                             [f"data.path={common.SHARED_DATA / 'amazon-beauty-2014'}"])
        import_into_run(config, run.path)
        import_codes(run, "text", common.SHARED_DATA / "amazon-beauty-2014/lcrec/Beauty.index.json", "row")
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--world", choices=("successor", "beauty"), default="successor")
    parser.add_argument("--steps", type=int, default=400, help="training steps per variant")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--eval-every", type=int, default=50, help="validate every N steps")
    parser.add_argument("--eval-users", type=int, default=500)
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args()
    folder = ROOT / "runs" / f"ttq-{args.world}"
    started = time.perf_counter()
    base = base_run(args.world, folder)
    curves = {}
    for variant in args.variants:
        run = RunDir(folder / variant)
        shutil.rmtree(run.path, ignore_errors=True)                   # a fresh run: curves start at step 0
        shutil.copytree(base.path, run.path)
        config = run.config([*MODEL, *VARIANTS[variant], f"training.max_steps={args.steps}", "training.epochs=1000",
                             f"training.batch_size={args.batch_size}", f"training.eval_every_steps={args.eval_every}",
                             f"training.eval_users={args.eval_users}", "training.patience=1000",
                             "training.checkpoint_every=100000", "decoding.beam_size=20", "decoding.top_k=20"])
        print(f"== {args.world} {variant}", flush=True)
        summary = train_run(run, config, progress=False)
        results = evaluate_run(run, config, progress=False)
        width = len(json.loads((run.path / "vocabulary.json").read_text())["levels"]["text"])
        curves[variant] = {
            "history": summary["history"], "steps": summary["steps"], "tokens_per_item": width,
            "samples_per_second": summary["samples_per_second"],
            "next_item_targets_per_second": summary["target_tokens_per_second"] / width,
            "best_valid_ndcg@10": summary["best_score"],
            "test": {k: v for k, v in results["test"].items() if k in ("hr@10", "ndcg@10", "recall@5", "ndcg@5",
                                                                       "recall@10", "hr@1")}}
        print({k: v for k, v in curves[variant].items() if k != "history"}, flush=True)
    ratios = {name: curve["next_item_targets_per_second"] / curves["t5-tuned"]["next_item_targets_per_second"]
              for name, curve in curves.items() if "causal" in name and "t5-tuned" in curves}
    png = common.RESULTS / f"time_to_quality-{args.world}-backbones.png"
    plot(curves, png, args.world)
    common.write_result("time_to_quality", args.world, "backbones",
                        {"curves": curves, "next_item_targets_per_second_vs_t5_tuned": ratios},
                        wall_seconds=time.perf_counter() - started, split="valid",
                        config={"model": MODEL, "variants": {v: VARIANTS[v] for v in curves}, "steps": args.steps,
                                "batch_size": args.batch_size, "eval_every_steps": args.eval_every,
                                "eval_users": args.eval_users, "plot": png.name})


def plot(curves: dict, path: Path, world: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for name, curve in curves.items():
        points, style = curve["history"], "-" if "causal" in name else "--"
        scores = [h["valid_ndcg@10"] for h in points]
        axes[0].plot([h["train_seconds"] for h in points], scores, style, label=name)
        axes[1].plot([h["target_tokens"] / curve["tokens_per_item"] for h in points], scores, style, label=name)
    axes[0].set_xlabel("training seconds (2 CPU cores)")
    axes[1].set_xlabel("next-item targets seen")
    for ax in axes:
        ax.set_ylabel("validation NDCG@10")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7)
    fig.suptitle(f"time to quality, {world}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
