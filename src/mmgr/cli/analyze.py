"""`mmgr analyze NAME=RUN [NAME=RUN ...] --out RUN`: MGR's modality analyses over evaluated runs of one dataset."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from mmgr.cli.common import console
from mmgr.errors import MmgrError


def analyze(
    runs: list[str] = typer.Argument(..., help="Evaluated runs as NAME=RUN (any names): runs of one SID each "
                                               "(text, image, fused, read from their manifests) give the top-10 "
                                               "overlaps, late-fusion runs the correspondence analysis."),
    out: Path = typer.Option(..., "--out", "-o", help="Run whose codes are analysed (fused, text, image); "
                                                     "analysis/ is written into it."),
) -> None:
    """Fused-SID AMI, top-10 overlap, late-fusion correspondence, per-user-kind breakdown: JSON + PNG plots."""
    from mmgr.evaluation.modality import analyse_runs, plot_summary
    from mmgr.io import write_json_atomic

    named = dict(_named(item) for item in runs)
    rows = {}
    for name, path in named.items():
        results = path / "results.json"
        if not results.is_file():
            raise MmgrError(f"{path}: not evaluated (no results.json); run `mmgr evaluate {path}` first")
        rows[name] = {"test": json.loads(results.read_text())["test"]}
    summary = {"rows": rows, "analyses": analyse_runs(named, out)}
    folder = out / "analysis"
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(folder / "modality.json", summary)
    plots = plot_summary(summary, folder / "modality")
    console.print_json(json.dumps(summary["analyses"]))
    console.print(f"[green]wrote[/green] {folder / 'modality.json'} and {', '.join(p.name for p in plots)}")


def _named(item: str) -> tuple[str, Path]:
    name, sep, path = item.partition("=")
    if not sep or not name or not path:
        raise MmgrError(f"'{item}' is not NAME=RUN (for example mgr-lf=runs/ml-lf)")
    return name, Path(path)
