"""TIGER on Amazon Beauty (P5 split), the whole pipeline on real data, test metrics next to the paper's.

    python benchmarks/tiger_beauty.py [--minutes 30 | --max-steps N] [KEY=VALUE ...]
    python benchmarks/tiger_beauty.py --recipe configs/tiger-causal.yaml --sids letter --max-steps N [KEY=VALUE ...]

Imports Beauty into runs/tiger-beauty with configs/beauty.yaml + configs/tiger.yaml, encodes the item text
(all-MiniLM-L6-v2, offline), learns RQ-VAE semantic IDs (3 x 256 + collision code), trains the TIGER-size T5 within
a wall-clock budget (`--minutes` = training.budget_minutes: the run's own first steps size the cosine schedule;
`--max-steps` trains an exact, reproducible number of steps instead), evaluates on
the test users by full-ranking beam search, and writes benchmarks/results/quality-amazon-beauty-2014-tiger.json.
Re-running resumes from the run directory (data, features, codes and the training checkpoint are reused).
`--recipe` trains another method recipe (e.g. the causal backbone) and `--sids letter` imports LETTER's published
4-level SIDs (`lcrec/Beauty.index.json`) instead of learning RQ-VAE codes; each combination has its own run folder
(runs/<recipe>[-letter][-tag]-beauty) and results file (quality-amazon-beauty-2014-<recipe>[-letter][-tag].json).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from common import SHARED_DATA, write_result

from mmgr.config import Config, load_config, validate_config
from mmgr.data.importer import import_into_run
from mmgr.encoders.stage import encode_run
from mmgr.engines.base import evaluate_run, train_run
from mmgr.evaluation import published
from mmgr.rundir import RunDir
from mmgr.tokenizers.stage import import_codes, tokenize_run

ROOT = Path(__file__).resolve().parents[1]
METRICS = [f"{m}@{k}" for k in (1, 5, 10, 20) for m in ("recall", "hr", "ndcg", "mrr")]
REFERENCE = published.table("amazon-beauty-2014").reference()


def method_name(recipe: Path, sids: str, tag: str = "") -> str:
    return recipe.stem + ("-letter" if sids == "letter" else "") + (f"-{tag}" if tag else "")


def prepared(recipe: Path = ROOT / "configs" / "tiger.yaml", sids: str = "rq-vae", tag: str = "") -> RunDir:
    run = RunDir(ROOT / "runs" / f"{method_name(recipe, sids, tag)}-beauty")
    if not run.exists():
        config = load_config([ROOT / "configs" / "beauty.yaml", recipe],
                             [f"data.path={SHARED_DATA / 'amazon-beauty-2014'}"])
        import_into_run(config, run.path)
    stages = run.manifest()["stages"]
    if sids == "letter":
        if "tokenize.text" not in stages:
            import_codes(run, "text", SHARED_DATA / "amazon-beauty-2014/lcrec/Beauty.index.json", "row")
        return run
    if "encode.text" not in stages:
        encode_run(run, "text", run.config(), progress=False)
    if "tokenize.text" not in stages:
        tokenize_run(run, "text", run.config())
    return run


def trained(run: RunDir, config: Config) -> dict:
    """Train, or keep the summary of a run that finished training with exactly this config (re-running only
    evaluates it; a resumed run that had nothing left to train would report no speed)."""
    recorded = run.manifest()["stages"].get("train")
    if recorded and validate_config(run.manifest()["config"]) == config:
        return recorded
    return train_run(run, config, progress=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0, help="training budget (training.budget_minutes)")
    parser.add_argument("--max-steps", type=int, default=None, help="train exactly this many steps instead")
    parser.add_argument("--recipe", type=Path, default=ROOT / "configs" / "tiger.yaml", help="method recipe")
    parser.add_argument("--sids", choices=("rq-vae", "letter"), default="rq-vae",
                        help="learn RQ-VAE codes of the MiniLM text embedding, or import LETTER's published SIDs")
    parser.add_argument("--tag", default="", help="suffix of the run folder and results file (e.g. gpu)")
    parser.add_argument("overrides", nargs="*", help="KEY=VALUE config overrides for training/decoding")
    args = parser.parse_args()
    start = time.perf_counter()
    run = prepared(args.recipe.resolve(), args.sids, args.tag)
    budget = [f"training.max_steps={args.max_steps}"] if args.max_steps else [f"training.budget_minutes={args.minutes}"]
    config = run.config([*args.overrides, *budget])
    summary = trained(run, config)
    results = evaluate_run(run, config, progress=True)
    wall = time.perf_counter() - start
    training = {key: summary[key] for key in (
        "steps", "epochs_run", "best_epoch", "best_score", "samples_per_second", "target_tokens_per_second",
        "train_seconds", "peak_memory_mb", "parameters", "train_examples", "validation_users", "resumed_from_step",
        "graph", "schedule_steps", "budget_steps_per_second", "wall_seconds") if summary.get(key) is not None}
    tokenizer = run.manifest()["stages"]["tokenize.text"]
    write_result("quality", "amazon-beauty-2014", method_name(args.recipe, args.sids, args.tag),
                 {key: results["test"][key] for key in METRICS},
                 split="test", wall_seconds=wall, config=config.model_dump(mode="json"), reference=REFERENCE,
                 extra={"protocol": results["protocol"],
                        "test_users": results["test"]["users"], "training": training,
                        "valid_metrics": {key: results["valid"][key] for key in METRICS},
                        "budget": {"minutes": config.training.budget_minutes, "max_steps": args.max_steps},
                        "history": summary["history"], "tokenizer": tokenizer,
                        "decoding_users_per_second": results["test"]["users_per_second"]})
    print({key: round(results["test"][key], 4) for key in ("recall@5", "ndcg@5", "recall@10", "ndcg@10")})


if __name__ == "__main__":
    main()
