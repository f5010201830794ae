"""`mmgr tokenize RUN --method rq-kmeans|rq-vae --modality M [--levels 3 --codebook 256] [KEY=VALUE...]`."""

from __future__ import annotations

from pathlib import Path

import typer

from mmgr.cli.common import console, err_console, stats_table
from mmgr.errors import MmgrError
from mmgr.rundir import RunDir


def tokenize(
    run: Path = typer.Argument(..., help="Run directory with features (from `mmgr encode`)."),
    modality: str = typer.Option(..., "--modality", "-m", help="Which features to tokenize (text, image, fused)."),
    method: str = typer.Option(None, help="rq-kmeans or rq-vae."),
    levels: int = typer.Option(None, help="Code levels (before the collision level)."),
    codebook: int = typer.Option(None, help="Codes per level."),
    collisions: str = typer.Option(None, help="append (TIGER) or reassign (MQL4GRec)."),
    import_table: Path = typer.Option(None, "--import", help="Use a published SID table (LC-Rec index.json) instead."),
    align: str = typer.Option("item_id", help="--import: table keys are item ids (item_id; or the source's own "
                                               "indices, for data imported with an id map) or 0-based rows (row)."),
    force: bool = typer.Option(False, help="--import: replace this modality's existing codes."),
    overrides: list[str] = typer.Argument(None, help="Config overrides, e.g. tokenizer.rqvae.epochs=50."),
) -> None:
    """Learn semantic IDs for one modality and print their diagnostics."""
    from mmgr.tokenizers.stage import import_codes, tokenize_run

    run_dir = RunDir(run)
    if import_table is not None:
        if align not in ("item_id", "row"):
            raise MmgrError(f"--align must be item_id or row, got {align!r}")
        report = import_codes(run_dir, modality, import_table, align, force=force)  # type: ignore[arg-type]
    else:
        explicit = {"tokenizer.method": method, "tokenizer.levels": levels, "tokenizer.codebook_size": codebook,
                    "tokenizer.collisions": collisions}
        config = run_dir.config([*(f"{k}={v}" for k, v in explicit.items() if v is not None), *(overrides or [])])
        report = tokenize_run(run_dir, modality, config)
    shown = {k: v for k, v in report.items() if k != "warnings"}
    console.print(stats_table(f"tokenize {modality}", shown))
    for warning in report.get("warnings", []):
        err_console.print(f"[yellow]warning:[/yellow] {warning}")
