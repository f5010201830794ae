"""The CPU-sized T5 rows of the script benchmarks (`benchmarks/trialigngr.py`, `benchmarks/cold_start.py`): one small
generator and RQ-k-means codes shared by every row, a base run per dataset (data, features, every modality's codes)
and each row a copy of it trained with its own settings, reused when finished with the same settings. Method
comparisons to convergence are suites (`mmgr bench --suite`); these rows are equal, small step budgets.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Any

from mmgr.config import Config, load_config, validate_config
from mmgr.pipeline import ensure_codes, fit_to_data, run_recipe
from mmgr.rundir import RunDir

ROOT = Path(__file__).resolve().parents[1]
DATASETS = {  # name -> (results name, dataset recipe, modalities its data has)
    "synthetic": ("synthetic", "configs/synthetic.yaml", ("text", "image", "fused")),
    "ml-100k": ("movielens-100k-posters", "configs/ml-100k.yaml", ("text", "image", "fused")),
    "arts": ("amazon-arts-2018", "configs/arts.yaml", ("text", "image")),
    "beauty": ("amazon-beauty-2014", "configs/beauty.yaml", ("text",)),
    "scientific": ("amazon-scientific-2018", "configs/scientific.yaml", ("text",)),
}
# One CPU-sized generator for every row (TIGER's 4+4 layers at d_model 128 do not converge in this budget on 2 cores).
SHARED = ["tokenizer.method=rq-kmeans", "tokenizer.levels=3", "tokenizer.collisions=append",
          "model.kind=t5", "model.d_model=64", "model.num_layers=2", "model.num_decoder_layers=2",
          "model.num_heads=4", "model.d_kv=16", "model.d_ff=256", "model.dropout=0.1", "model.user_buckets=0",
          "training.batch_size=128", "training.lr=0.003", "training.warmup_steps=50", "training.eval_users=500",
          "training.alignment_epochs=3", "training.checkpoint_every=200",
          "decoding.beam_size=20", "decoding.top_k=20"]
CODEBOOK = {"synthetic": 16, "ml-100k": 32, "arts": 256, "beauty": 256, "scientific": 64}  # 4,344 items


def variant_config(dataset: str, variant: str, args: argparse.Namespace, variants: dict[str, list[str]]) -> Config:
    """The row `variant` (its overrides in `variants`) on `dataset` with the shared settings and the step budget."""
    budget = [f"training.max_steps={args.steps}", f"training.epochs={args.epochs}",
              f"training.patience={args.patience}",
              f"tokenizer.codebook_size={CODEBOOK[dataset]}", f"split.max_history={args.history}"]
    settings = variants[variant]
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
