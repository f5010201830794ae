"""`mmgr data import|stats|download`."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from mmgr.cli.common import build_config, console, problems_table, stats_table, writes_run
from mmgr.config import Config
from mmgr.config_base import choices
from mmgr.data.dataset import Dataset
from mmgr.errors import MmgrError
from mmgr.rundir import RunDir

FORMATS = choices("data format", "synthetic")
app = typer.Typer(help="Import, inspect and download datasets.", no_args_is_help=True)


@app.command("import")
@writes_run("import", "out", creates=True)
def import_(
    args: list[str] = typer.Argument(None, metavar="[PATH] [KEY=VALUE]...",
                                     help="Input file or folder (not needed for --format synthetic), then config "
                                          "overrides such as data.kcore=5."),
    format: str = typer.Option(None, "--format", "-f", help=f"{', '.join(FORMATS)} (detected from PATH's file "
                                                              "names when omitted)."),
    out: Path = typer.Option(..., "--out", "-o", help="Run directory to create."),
    items: Path = typer.Option(None, help="Extra item table (p5 items.csv, generic items file)."),
    images: Path = typer.Option(None, help="Image folder keyed by item id."),
    kcore: int = typer.Option(None, help="Iterative k-core filter (0 = off)."),
    dedup: bool = typer.Option(None, "--dedup/--no-dedup", help="Drop repeated (user, item) interactions."),
    recipe: list[Path] = typer.Option(None, "--recipe", "-r", help="YAML recipe(s), merged in order (e.g. a dataset "
                                                                   "recipe then a method recipe)."),
    force: bool = typer.Option(False, help="Replace an existing run directory's data."),
) -> None:
    """Read a dataset, clean it (chronological order, filters), write Parquet tables + manifest into OUT."""
    from mmgr.data.importer import import_into_run

    if RunDir(out).exists() and not force:
        raise MmgrError(f"{out} already holds a run; pass --force to replace it or choose another --out")
    paths = [arg for arg in args or [] if "=" not in arg]
    overrides = [arg for arg in args or [] if "=" in arg]
    if len(paths) > 1:
        raise MmgrError(f"one input PATH expected, got {paths}")
    path = paths[0] if paths else None
    config = build_config(recipe, overrides, **{"data.format": format, "data.path": path, "data.items": items,
                                                "data.images": images, "data.kcore": kcore,
                                                "data.dedup": dedup})
    config = _with_format(config, path)
    with console.status(f"importing {config.data.format} data"):
        run, _, summary = import_into_run(config, out)
    _show({**summary, "split": run.manifest()["split"]})
    console.print(f"[green]wrote[/green] {run.path} (fingerprint {summary['fingerprint'][:12]})")


@app.command()
def stats(
    run: Path = typer.Argument(..., help="Run directory."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Statistics of an imported dataset (recomputed from its tables, checked against the manifest)."""
    manifest = RunDir(run).manifest()
    recorded = manifest.get("dataset")
    if recorded is None:
        raise MmgrError(f"{run}: no dataset recorded; run `mmgr data import` first")
    dataset = Dataset.load(run, recorded["name"], recorded.get("problems"))
    if dataset.fingerprint() != recorded["fingerprint"]:
        raise MmgrError(f"{run}: the tables no longer match the manifest's fingerprint; re-import the data")
    summary = {**recorded, "stats": dataset.stats(), "split": manifest.get("split")}
    if as_json:
        print(json.dumps(summary, indent=2))
    else:
        _show(summary)


@app.command()
def download(
    name: str = typer.Argument(..., help="amazon-2014, amazon-2023 or movielens."),
    out: Path = typer.Option(Path("data"), "--out", "-o", help="Folder for the downloaded files."),
    category: str = typer.Option(None, help="Amazon category (Beauty for 2014, All_Beauty for 2023) or MovieLens "
                                                 "version (ml-100k, ml-1m)."),
    base_url: str = typer.Option(None, help="Mirror to download from instead of the public source."),
) -> None:
    """Download a public dataset (resumable, checksummed)."""
    from mmgr.data.download import SOURCES
    from mmgr.data.download import download as fetch_dataset

    if name in SOURCES:
        console.print(f"[bold]{name}[/bold]: {SOURCES[name].license}")
    for path in fetch_dataset(name, out, category=category, base_url=base_url):
        console.print(f"[green]ready[/green] {path}")


def _with_format(config: Config, path: str | None) -> Config:
    """The config with its data format settled: detected from PATH when neither `--format`, a recipe nor an
    override names one (the built-in synthetic world is only made when asked for); refused when unclear."""
    from mmgr.data.formats.detect import detect_format

    data = config.data
    if "format" in data.model_fields_set:
        if data.format == "synthetic" and path is not None:
            raise MmgrError(f"--format synthetic generates its own data and reads no PATH (got {path}); drop PATH, "
                            "or pass the format of the files in it")
        return config
    if data.path is None:
        raise MmgrError("no input: pass PATH (its format is detected from the file names) and optionally --format "
                        f"({', '.join(FORMATS)}); `--format synthetic` generates the built-in synthetic world")
    detected = detect_format(Path(data.path))
    console.print(f"format: {detected} (detected from the file names; pass --format to choose another)")
    return config.model_copy(update={"data": data.model_copy(update={"format": detected})})


def _show(summary: dict) -> None:
    console.print(stats_table(f"{summary['name']} ({summary['format']})", summary["stats"]))
    if summary.get("split"):
        split = {k: v for k, v in summary["split"].items() if k != "targets"}
        console.print(stats_table("split", split))
    table = problems_table(summary.get("problems") or {})
    if table is not None:
        console.print(table)
