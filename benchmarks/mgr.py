"""MGR (arXiv 2503.23333) on one dataset: TIGER-text, TIGER-image, MGR-EF, MGR-LF, MGR-LF++ and LF++ with each part
removed (and the InfoNCE alignment variant), same data, codes, seed and step budget for every row; paired bootstrap
against TIGER-text; modality analyses (dominance, correspondence, per-user-kind breakdown on the synthetic world).

    python benchmarks/mgr.py --dataset synthetic
    python benchmarks/mgr.py --dataset ml-100k --steps 1500
    python benchmarks/mgr.py --dataset arts --steps 1500

Runs live in runs/mgr-<dataset>/<variant> (resumable: a finished variant with the same config is reused). Writes
benchmarks/results/quality-<dataset>-<variant>.json per row and mgr-<dataset>-summary.json with the table and
analyses, plus PNG plots beside it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

from mmgr.config import Config, load_config, validate_config  # noqa: E402
from mmgr.evaluation import published  # noqa: E402
from mmgr.evaluation.modality import analyse_runs, plot_summary  # noqa: E402
from mmgr.evaluation.significance import compare_runs  # noqa: E402
from mmgr.pipeline import ensure_codes, fit_to_data, run_recipe  # noqa: E402
from mmgr.rundir import RunDir  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATASETS = {  # name -> (results name, dataset recipe, modalities its data has)
    "synthetic": ("synthetic", "configs/synthetic.yaml", ("text", "image", "fused")),
    "ml-100k": ("movielens-100k-posters", "configs/ml-100k.yaml", ("text", "image", "fused")),
    "arts": ("amazon-arts-2018", "configs/arts.yaml", ("text", "image")),
    "beauty": ("amazon-beauty-2014", "configs/beauty.yaml", ("text",)),
    "scientific": ("amazon-scientific-2018", "configs/scientific.yaml", ("text",)),
}
LF = ["model.layout=late-fusion", "model.modalities=[text,image]"]
VARIANTS = {  # name -> overrides on top of the shared settings
    "tiger-text": ["model.layout=single", "model.modalities=[text]"],
    "tiger-image": ["model.layout=single", "model.modalities=[image]"],
    "mgr-ef": ["model.layout=single", "model.modalities=[fused]"],
    "mgr-lf": [*LF, "model.switch_tokens=false", "training.alignment=none"],
    "mgr-lfpp": [*LF, "model.switch_tokens=true", "training.alignment=translate"],
    "mgr-lfpp-no-switch": [*LF, "model.switch_tokens=false", "training.alignment=translate"],
    "mgr-lfpp-no-align": [*LF, "model.switch_tokens=true", "training.alignment=none"],
    "mgr-lfpp-infonce": [*LF, "model.switch_tokens=true", "training.alignment=infonce"],
}
ABLATIONS = {  # the paper's codebook-size and SID-length ablations, on MGR-LF++ (pass with --variants)
    f"mgr-lfpp-{name}": [*VARIANTS["mgr-lfpp"], setting] for name, setting in (
        ("codebook8", "tokenizer.codebook_size=8"), ("codebook32", "tokenizer.codebook_size=32"),
        ("levels2", "tokenizer.levels=2"), ("levels4", "tokenizer.levels=4"))}
REFERENCES = {"amazon-arts-2018": published.table("amazon-arts-2018").reference()}  # same data and codes
# One CPU-sized generator for every row (TIGER's 4+4 layers at d_model 128 do not converge in this budget on 2 cores).
SHARED = ["tokenizer.method=rq-kmeans", "tokenizer.levels=3", "tokenizer.collisions=append",
          "model.kind=t5", "model.d_model=64", "model.num_layers=2", "model.num_decoder_layers=2",
          "model.num_heads=4", "model.d_kv=16", "model.d_ff=256", "model.dropout=0.1", "model.user_buckets=0",
          "training.batch_size=128", "training.lr=0.003", "training.warmup_steps=50", "training.eval_users=500",
          "training.alignment_epochs=3", "training.checkpoint_every=200",
          "decoding.beam_size=20", "decoding.top_k=20"]
CODEBOOK = {"synthetic": 16, "ml-100k": 32, "arts": 256, "beauty": 256, "scientific": 64}  # 4,344 items


def variant_config(dataset: str, variant: str, args: argparse.Namespace,
                   variants: dict[str, list[str]] | None = None) -> Config:
    budget = [f"training.max_steps={args.steps}", f"training.epochs={args.epochs}",
              f"training.patience={args.patience}",
              f"tokenizer.codebook_size={CODEBOOK[dataset]}", f"split.max_history={args.history}"]
    settings = (variants or {**VARIANTS, **ABLATIONS})[variant]
    return load_config([ROOT / DATASETS[dataset][1]], [*SHARED, *budget, *settings, *args.overrides])


def base_run(dataset: str, config: Config, folder: Path) -> RunDir:
    """Data, features and every modality's codes, once per dataset; variants start from a copy."""
    run = RunDir(folder / "base")
    if not run.exists():
        from mmgr.data.importer import import_into_run

        import_into_run(config, run.path)
    from mmgr.data.dataset import Dataset

    dataset_obj = Dataset.load(run.path, run.manifest()["dataset"]["name"])
    for modality in DATASETS[dataset][2]:
        wanted = config.model_copy(update={"model": config.model.model_copy(update={"modalities": [modality]})})
        fitted, _ = fit_to_data(wanted, dataset_obj)
        for kept in fitted.model.modalities:
            ensure_codes(run, kept, fitted, progress=False, say=print)
    return run


def variant_run(base: RunDir, folder: Path, variant: str) -> RunDir:
    target = folder / variant
    if not RunDir(target).exists():
        shutil.copytree(base.path, target, ignore=shutil.ignore_patterns("checkpoints", "logs", "model.safetensors",
                                                                          "results.json", "per_user_*"))
    return RunDir(target)


def fitted_config(run: RunDir, config: Config) -> Config:
    """`config` as the pipeline records it in this run's manifest: narrowed to the modalities the data has."""
    from mmgr.data.dataset import Dataset

    return fit_to_data(config, Dataset.load(run.path, run.manifest()["dataset"]["name"]))[0]


def finished(run: RunDir, fitted: Config) -> bool:
    """Whether `run` holds a row trained and evaluated with `fitted`'s model and training settings (`fitted`: the
    requested config after `fitted_config`)."""
    manifest = run.manifest()
    recorded = validate_config(manifest["config"])          # settings added since then take their defaults
    return (run.path / "results.json").is_file() and "evaluate" in manifest["stages"] and \
        manifest["stages"].get("train", {}).get("steps") is not None and \
        recorded.model == fitted.model and recorded.training == fitted.training


def ensure_row(run: RunDir, config: Config, label: str) -> None:
    """Train and evaluate `run` with `config` unless it is finished; a run left by a kill resumes from its
    checkpoints, one made with other settings starts afresh (its checkpoints, weights and results removed)."""
    fitted = fitted_config(run, config)
    if finished(run, fitted):
        return
    print(f"== {label}", flush=True)
    if validate_config(run.manifest()["config"]) != fitted:
        for stale in ("checkpoints", "model.safetensors", "results.json"):
            path = run.path / stale
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    run_recipe(config, run.path, progress=False, say=print)


def row_seconds(manifest: dict[str, Any]) -> float:
    """Wall time of a row's training and evaluation, from its manifest (also for a row reused from disk)."""
    evaluated = manifest["stages"]["evaluate"]
    return manifest["stages"]["train"]["wall_seconds"] + sum(
        evaluated[split]["users"] / evaluated[split]["users_per_second"] for split in ("valid", "test"))


def parser_for(description: str, variants: list[str], default: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="synthetic")
    parser.add_argument("--steps", type=int, default=1200, help="next-item training steps per row (equal budget)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--patience", type=int, default=10, help="early stopping: validations without improvement")
    parser.add_argument("--history", type=int, default=20, help="split.max_history")
    parser.add_argument("--variants", nargs="*", default=default, choices=variants)
    parser.add_argument("overrides", nargs="*", help="extra key=value settings for every row")
    return parser


def run_variants(args: argparse.Namespace, variants: dict[str, list[str]]) -> tuple[dict[str, Any], Path, RunDir]:
    """Train and evaluate each of `args.variants` (reusing finished rows) in runs/mgr-<dataset>/, write one
    quality-<dataset>-<row>.json per row; returns the rows, the runs folder and the base run."""
    name, dataset = DATASETS[args.dataset][0], args.dataset
    folder = ROOT / "runs" / f"mgr-{dataset}"
    base = base_run(dataset, variant_config(dataset, "tiger-text", args), folder)
    rows: dict[str, Any] = {}
    for variant in args.variants:
        config = variant_config(dataset, variant, args, variants)
        run = variant_run(base, folder, variant)
        ensure_row(run, config, f"{dataset} {variant}")
        manifest = run.manifest()
        results, train = json.loads((run.path / "results.json").read_text()), manifest["stages"]["train"]
        rows[variant] = {"run": run.path.relative_to(ROOT).as_posix(), "test": results["test"],
                         "valid": results["valid"], "fallback": manifest["stages"]["pipeline"]["fallback"],
                         "train": {k: train.get(k) for k in ("steps", "epochs_run", "best_epoch", "train_seconds",
                                                              "samples_per_second", "target_tokens_per_second",
                                                              "train_examples", "parameters",
                                                              "resumed_from_step")},
                         "alignment": train.get("stages", {}).get("align")}
        if variant != "tiger-text" and "tiger-text" in rows:
            rows[variant]["vs_tiger_text"] = compare_runs(folder / "tiger-text", run.path, "test",
                                                          ("ndcg@10", "hr@10", "mrr@20"), resamples=2000)
        method = variant if variant.startswith(("mgr", "syngr")) else f"mgr-{variant}"
        common.write_result("quality", name, method,
                            {k: v for k, v in results["test"].items() if "@" in k}, split="test",
                            reference=REFERENCES.get(name),
                            wall_seconds=row_seconds(manifest), config=manifest["config"],
                            extra={"train": rows[variant]["train"], "fallback": rows[variant]["fallback"],
                                   "vs_tiger_text": rows[variant].get("vs_tiger_text"),
                                   "budget": f"{args.steps} next-item steps x batch 128 (equal for every row)"})
    return rows, folder, base


def main() -> None:
    args = parser_for(__doc__.split("\n")[0], [*VARIANTS, *ABLATIONS], list(VARIANTS)).parse_args()
    name = DATASETS[args.dataset][0]
    started = time.perf_counter()
    rows, folder, base = run_variants(args, {**VARIANTS, **ABLATIONS})
    analyses = analyse_runs({v: folder / v for v in rows}, base.path)
    summary = {"rows": rows, "analyses": analyses, "reference": REFERENCES.get(name),
               "budget": {"next_item_steps": args.steps, "batch_size": 128, "alignment_epochs": 3,
                          "patience": args.patience,
                          "note": "equal step budgets (early stopping on validation NDCG@10 may end a row sooner: "
                                  "see each row's steps); the CPU forbids convergence at TIGER size"}}
    plots = plot_summary(summary, common.RESULTS / f"mgr-{name}")
    common.write_result("mgr", name, "summary", summary, split="test", wall_seconds=time.perf_counter() - started,
                        config={"shared": SHARED, "patience": args.patience,
                                "variants": {v: {**VARIANTS, **ABLATIONS}[v] for v in rows},
                                "codebook_size": CODEBOOK[args.dataset], "max_history": args.history,
                                "plots": [p.name for p in plots]})


if __name__ == "__main__":
    main()
