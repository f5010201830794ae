"""TIGER on Amazon Beauty (P5 split), the whole pipeline on real data, test metrics next to the paper's.

    python benchmarks/tiger_beauty.py [--minutes 30 | --max-steps N] [KEY=VALUE ...]

Imports Beauty into runs/tiger-beauty with configs/beauty.yaml + configs/tiger.yaml, encodes the item text
(all-MiniLM-L6-v2, offline), learns RQ-VAE semantic IDs (3 x 256 + collision code), trains the TIGER-size T5 within
a time budget (a short probe measures steps/s, then training.max_steps is set to fit `--minutes`; `--max-steps`
trains an exact, reproducible number of steps instead), evaluates on
the test users by full-ranking beam search, and writes benchmarks/results/quality-amazon-beauty-2014-tiger.json.
Re-running resumes from the run directory (data, features, codes and the training checkpoint are reused).
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from common import SHARED_DATA, write_result

from mmgr.config import load_config
from mmgr.data.importer import import_into_run
from mmgr.encoders.stage import encode_run
from mmgr.evaluation import published
from mmgr.rundir import RunDir
from mmgr.tokenizers.stage import tokenize_run
from mmgr.training.stage import evaluate_run, train_run

ROOT = Path(__file__).resolve().parents[1]
METRICS = [f"{m}@{k}" for k in (1, 5, 10, 20) for m in ("recall", "hr", "ndcg", "mrr")]
REFERENCE = published.table("amazon-beauty-2014").reference()


def prepared() -> RunDir:
    run = RunDir(ROOT / "runs" / "tiger-beauty")
    if not run.exists():
        config = load_config([ROOT / "configs" / "beauty.yaml", ROOT / "configs" / "tiger.yaml"],
                             [f"data.path={SHARED_DATA / 'amazon-beauty-2014'}"])
        import_into_run(config, run.path)
    stages = run.manifest()["stages"]
    if "encode.text" not in stages:
        encode_run(run, "text", run.config(), progress=False)
    if "tokenize.text" not in stages:
        tokenize_run(run, "text", run.config())
    return run


def probe_speed(run: RunDir, overrides: list[str]) -> float:
    """Training steps per second, from 20 steps on a fresh copy of the run (a probe must not resume)."""
    probe = run.config([*overrides, "training.max_steps=20", "training.eval_users=200"])
    probe_run = RunDir(ROOT / "runs" / "tiger-beauty-probe")
    shutil.rmtree(probe_run.path, ignore_errors=True)
    shutil.copytree(run.path, probe_run.path, ignore=shutil.ignore_patterns("checkpoints", "model.safetensors"))
    summary = train_run(probe_run, probe, progress=False)
    if summary["steps"] == 0 or summary["samples_per_second"] <= 0:
        raise SystemExit(f"the speed probe trained no steps ({summary}); nothing to size the budget with")
    return summary["samples_per_second"] / probe.training.batch_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0, help="training budget (sized by a speed probe)")
    parser.add_argument("--max-steps", type=int, default=None, help="train exactly this many steps (no probe)")
    parser.add_argument("overrides", nargs="*", help="KEY=VALUE config overrides for training/decoding")
    args = parser.parse_args()
    start = time.perf_counter()
    run = prepared()
    steps_per_second, max_steps = None, args.max_steps
    if max_steps is None:
        steps_per_second = probe_speed(run, args.overrides)
        max_steps = max(20, int(args.minutes * 60 * steps_per_second))
    config = run.config([*args.overrides, f"training.max_steps={max_steps}"])
    summary = train_run(run, config, progress=True)
    results = evaluate_run(run, config, progress=True, splits=("test",))
    wall = time.perf_counter() - start
    training = {key: summary[key] for key in (
        "steps", "epochs_run", "best_epoch", "best_score", "samples_per_second", "target_tokens_per_second",
        "train_seconds", "peak_memory_mb", "parameters", "train_examples", "validation_users", "resumed_from_step")}
    tokenizer = run.manifest()["stages"]["tokenize.text"]
    write_result("quality", "amazon-beauty-2014", "tiger", {key: results["test"][key] for key in METRICS},
                 split="test", wall_seconds=wall, config=config.model_dump(mode="json"), reference=REFERENCE,
                 extra={"protocol": results["protocol"],
                        "test_users": results["test"]["users"], "training": training,
                        "budget": {"minutes": args.minutes if args.max_steps is None else None, "max_steps": max_steps,
                                   "probe_steps_per_second": steps_per_second},
                        "history": summary["history"], "tokenizer": tokenizer,
                        "decoding_users_per_second": results["test"]["users_per_second"]})
    print({key: round(results["test"][key], 4) for key in ("recall@5", "ndcg@5", "recall@10", "ndcg@10")})


if __name__ == "__main__":
    main()
