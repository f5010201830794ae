"""`mmgr quickstart`: every stage built so far, on the built-in synthetic world (recipe: mmgr/recipes/quickstart.yaml,
shipped inside the package)."""

from __future__ import annotations

import shutil
from pathlib import Path

import typer

from mmgr.cli.common import console, problems_table, stats_table
from mmgr.config import Config, load_config
from mmgr.errors import MmgrError
from mmgr.rundir import LOCK, RunDir

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "quickstart.yaml"


def quickstart(
    out: Path = typer.Option(Path("runs/quickstart"), "--out", "-o", help="Run directory (replaced)."),
    overrides: list[str] = typer.Argument(None, help="Config overrides, e.g. data.synthetic.n_users=200."),
    progress: bool = typer.Option(True, help="Show progress bars."),
) -> None:
    """Generate the synthetic multimodal world, then import, encode, tokenize, train and evaluate."""
    config = load_config(RECIPE, overrides or [])
    if out.exists() and not RunDir(out).exists() and any(p.name != LOCK for p in out.iterdir()):
        raise MmgrError(f"{out} exists and is not a run directory; choose another --out")
    with RunDir(out).writing("quickstart"):
        _clear(out)
        _stages(config, out, progress)


def _clear(out: Path) -> None:
    """Empty a previous run directory (only ever one: it has a manifest), keeping the lock this process holds."""
    if not RunDir(out).exists():
        return
    for path in out.iterdir():
        if path.name == LOCK:
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def _stages(config: Config, out: Path, progress: bool) -> None:
    """Import, encode, tokenize, train and evaluate into `out`, printing each stage's summary."""
    from mmgr.data.importer import import_into_run
    from mmgr.encoders.stage import encode_run
    from mmgr.tokenizers.stage import tokenize_run
    from mmgr.training.stage import evaluate_run, train_run

    console.rule("1/5 data: generate the synthetic world and import it")
    run, _, summary = import_into_run(config, out)
    console.print(stats_table("synthetic world", summary["stats"]))
    table = problems_table(summary["problems"])
    if table is not None:
        console.print(table)
    console.rule("2/5 encode: text and image features")
    for modality in ("text", "image"):
        console.print(stats_table(f"{modality} features", encode_run(run, modality, run.config(), progress)))
    console.rule("3/5 tokenize: semantic IDs of the text features")
    report = tokenize_run(run, config.model.modalities[0], run.config())
    console.print(stats_table("semantic IDs", {k: report[k] for k in (
        "tokenizer", "codebook_sizes", "collision_rate_before", "collision_rate_after", "utilisation")}))
    console.rule("4/5 train: TIGER-style generative recommender")
    trained = train_run(run, run.config(), progress)
    console.print(stats_table("training", {k: v for k, v in trained.items() if k not in ("history", "stages")}))
    console.rule("5/5 evaluate: full ranking by constrained beam search")
    results = evaluate_run(run, run.config(), progress)
    console.print(stats_table("test", results["test"]))
    console.print(f"[green]done[/green]: {run.path} (results.json, per_user_test.parquet, manifest.json)")
