"""The comparison report: one JSON of every number, rendered as Markdown (figures beside it) and as one
self-contained HTML page (figures inlined as PNG data), from the same content."""

from __future__ import annotations

import base64
import html
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmgr.devices import describe_device
from mmgr.errors import MmgrError
from mmgr.evaluation import published
from mmgr.evaluation.significance import compare_runs
from mmgr.io import write_bytes_atomic, write_json_atomic
from mmgr.report.analyses import analysis_sections
from mmgr.report.figures import curves_figure, metrics_figure
from mmgr.report.paired import bootstrap_text, interval_text
from mmgr.report.runs import METRICS, RunSummary
from mmgr.rundir import git_commit, now_iso
from mmgr.version import __version__


@dataclass
class Figure:
    key: str          # file stem under figures/
    caption: str
    path: Path


def build(runs: list[RunSummary], baseline: str, out: Path, resamples: int = 10_000,
          command: str = "") -> dict[str, Any]:
    """Every number of the report (also written as report.json), with its figures written under out/figures."""
    check_comparable(runs)
    if baseline not in {r.name for r in runs}:
        raise MmgrError(f"baseline {baseline!r} is not one of the compared runs ({', '.join(r.name for r in runs)})")
    base = next(r for r in runs if r.name == baseline)
    figures = collect_figures(runs, out / "figures")
    match = published.matching(runs[0].dataset["stats"])
    return {                    # the first keys are every benchmark results file's (see benchmarks/common.py)
        "benchmark": "report", "dataset": runs[0].dataset["name"], "method": "+".join(r.name for r in runs),
        "metrics": {r.name: r.test for r in runs}, "device": describe_device(), "command": command,
        "commit": git_commit(),
        "title": f"mmgr comparison on {runs[0].dataset['name']}", "created": now_iso(), "mmgr_version": __version__,
        "data": runs[0].dataset, "protocol": runs[0].protocol, "baseline": baseline, "metric_names": list(METRICS),
        "rows": [row(r) for r in runs],
        "significance": {r.name: compare_runs(base.path, r.path, "test", METRICS, resamples)["metrics"]
                         for r in runs if r is not base},
        "published": match.reference() if match else None,
        "figures": [{"key": f.key, "caption": f.caption, "file": f"figures/{f.path.name}"} for f in figures],
    }


def check_comparable(runs: list[RunSummary]) -> None:
    """One dataset and one evaluation protocol for every run (the paired tests also check that every user's held-out
    item is the same; fingerprints differ where image files live in each run, as the synthetic world's do)."""
    if not runs:
        raise MmgrError("no runs to report")
    first = runs[0]
    for run in runs[1:]:
        if run.dataset["name"] != first.dataset["name"] or run.dataset["stats"] != first.dataset["stats"]:
            raise MmgrError(f"{run.name} ({run.path}) holds other data than {first.name}; a report compares runs of "
                            "one dataset")
        keys = {k for k in set(run.protocol) | set(first.protocol) if k not in ("ranking", "beam_size")}
        if any(run.protocol.get(k) != first.protocol.get(k) for k in keys):
            raise MmgrError(f"{run.name} was evaluated under another protocol than {first.name}")


def row(run: RunSummary) -> dict[str, Any]:
    return {"name": run.name, "run": run.path.name, "method": run.method, "users": run.users,
            "test": run.test, "intervals": {m: list(v) for m, v in run.intervals.items()}, "train": run.train,
            "tokenizers": run.tokenizers, "notes": run.notes, "generated": run.generated}


def collect_figures(runs: list[RunSummary], folder: Path) -> list[Figure]:
    """The report's plots, then each run's own figures, copied under `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    figures = [Figure("metrics", "Test metrics with 95% bootstrap intervals (users resampled)",
                      metrics_figure(runs, folder / "metrics.png")),
               Figure("curves", "Training curves: validation NDCG@10 and training loss",
                      curves_figure(runs, folder / "curves.png"))]
    for run in runs:
        for caption, source in run.figures.items():
            key = f"{run.name}-{caption.replace(' ', '-')}"
            target = folder / f"{key}.png"
            shutil.copyfile(source, target)
            figures.append(Figure(key, f"{run.name}: {caption}", target))
    return figures


def fmt(value: float) -> str:
    return f"{value:.4f}"


def metric_table(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the main table: mean [95% interval] per metric, and the paired test vs the baseline."""
    header = ["method", "users", *report["metric_names"], f"NDCG@10 vs {report['baseline']} (95% CI, p)"]
    cells = []
    for r in report["rows"]:
        values = [f"{fmt(r['test'][m])} [{fmt(r['intervals'][m][0])}, {fmt(r['intervals'][m][1])}]"
                  for m in report["metric_names"]]
        test = report["significance"].get(r["name"], {}).get("ndcg@10")
        versus = "baseline" if test is None else bootstrap_text(test) + (" *" if test["p_value"] < 0.05 else "")
        cells.append([r["name"], str(r["users"]), *values, versus])
    return header, cells


def convergence_table(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Per suite row: seeds, epochs, samples seen, training seconds, best epoch, converged."""
    header = ["method", "description", "seeds", "epochs", "samples seen", "train s", "best epoch", "converged"]
    return header, [[r["name"], r["description"], ", ".join(map(str, r["seeds"])), joined(r["epochs"]),
                     joined(r["samples_seen"]), joined(r["train_seconds"]), joined(r["best_epoch"]),
                     "yes" if r["converged"] else "NO"] for r in report["convergence"]]


def claims_table(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Per published claim: the paired difference of its two rows (NDCG@10, HR@10) and the verdict."""
    header = ["paper", "claim", "row - versus", "NDCG@10 diff [95% CI]", "HR@10 diff [95% CI]", "verdict"]
    return header, [[c["paper"], c["claim"], f"{c['row']} - {c['versus']}", *(difference(c["test"], m)
                                                                              for m in ("ndcg@10", "hr@10")),
                     verdict_text(c)] for c in report["claims"]]


def verdict_text(claim: dict[str, Any]) -> str:
    """A tested claim's verdict, flagged where one of its measured rows did not converge."""
    return claim["verdict"] + ("" if claim["converged"] or claim["test"] is None else " (a row not converged)")


def difference(test: dict[str, Any] | None, metric: str) -> str:
    """`+0.0012 [-0.0003, +0.0027], p=0.120` of a paired test ("-" where not measured)."""
    if test is None:
        return "-"
    t = test[metric]
    return interval_text(t["diff"], *t["ci"], t["p"])


def caveats(report: dict[str, Any]) -> list[str]:
    """What a reader must know before comparing the suite's rows: rows that did not converge, and rows whose
    training seconds other work shared the cores with (or where that was not recorded)."""
    rows = report.get("convergence") or []
    lines = []
    unconverged = [r["name"] for r in rows if not r["converged"]]
    if unconverged:
        lines.append(f"Not converged, so not a verdict: {', '.join(unconverged)}.")
    if report.get("unfinished"):
        lines.append(f"Not finished yet, so not in this report: {unfinished_text(report)}.")
    shared = [r["name"] for r in rows if any(r.get("shared_cores") or [])]
    unknown = [r["name"] for r in rows if None in r.get("shared_cores", [None])]
    if shared:
        lines.append(f"Other work shared the cores during training of {', '.join(shared)}: their training seconds "
                     "overstate the cost.")
    if unknown:
        lines.append(f"Whether other work shared the cores was not recorded for {', '.join(unknown)} (trained "
                     "before the load was logged): compare their training seconds with care.")
    return lines


def unfinished_text(report: dict[str, Any]) -> str:
    """`a-s1 (next-item: 14 epochs checkpointed, best at 12, 35 min), b-s1` of a suite's unfinished runs."""
    progress = report.get("in_progress") or {}
    return ", ".join(name + (f" ({'; '.join(stage_progress(s, p) for s, p in progress[name].items())})"
                             if name in progress else "") for name in report["unfinished"])


def stage_progress(stage: str, progress: dict[str, Any]) -> str:
    epochs = progress["epochs"]
    best = "" if progress.get("best_epoch") is None else f", best at {progress['best_epoch']}"
    minutes = "" if progress.get("train_seconds") is None else f", {progress['train_seconds'] / 60:.0f} min"
    return f"{stage}: {epochs} epoch{'s' * (epochs != 1)} checkpointed{best}{minutes}"


def published_table(report: dict[str, Any]) -> tuple[list[str], list[list[str]]] | None:
    if not report["published"]:
        return None
    metrics = report["metric_names"]
    header = ["published row", *metrics]
    return header, [[name, *(fmt(values[m]) if m in values else "-" for m in metrics)]
                    for name, values in report["published"]["metrics"].items()]


def training_table(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    header = ["method", "engine", "layout", "modalities", "objective", "tokenizer", "steps", "train s",
              "samples/s", "parameters"]
    cells = [[r["name"], r["method"]["engine"], r["method"]["layout"], "+".join(r["method"]["modalities"]),
              objective_label(r["method"]), r["method"]["tokenizer"] if r["tokenizers"] else "- (item ids)",
              str(r["train"].get("steps", "-")), _number(r["train"].get("train_seconds"), 0),
              _number(r["train"].get("samples_per_second"), 0), str(r["train"].get("parameters", "-"))]
             for r in report["rows"]]
    return header, cells


def generated_table(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    header = ["method", "text", "model", "items", "generated", "from cache", "seconds", "items/s"]
    cells = [[r["name"], name, str(g.get("model_id", "-")), str(g.get("items", "-")), str(g.get("computed", "-")),
              str(g.get("from_cache", "-")), _number(g.get("wall_seconds"), 0), _number(g.get("items_per_s"), 2)]
             for r in report["rows"] for name, g in r.get("generated", {}).items()]
    return header, cells


def objective_label(method: dict[str, Any]) -> str:
    return method["objective"] + ("" if method["alignment"] == "none" else f" after {method['alignment']}")


def tokenizer_table(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    header = ["method", "modality", "tokenizer", "collisions before", "after", "utilisation", "reconstruction cos"]
    cells = []
    for r in report["rows"]:
        for modality, t in r["tokenizers"].items():
            cells.append([r["name"], modality, str(t.get("tokenizer", "imported")),
                          _number(t.get("collision_rate_before")), _number(t.get("collision_rate_after")),
                          " / ".join(f"{u:.2f}" for u in t.get("utilisation", [])),
                          _number(t.get("reconstruction_cosine"))])
    return header, cells


def joined(values: list[Any]) -> str:
    return ", ".join(f"{v:,.0f}" if isinstance(v, int | float) else "-" for v in values)


def _number(value: Any, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if isinstance(value, int | float) else "-"


def sections(report: dict[str, Any]) -> list[tuple[str, str, tuple[list[str], list[list[str]]] | None]]:
    """(id, heading, table) of every tabular section, in order (generated texts only where a run made some)."""
    generated = generated_table(report)
    return [("metrics", "Test metrics (mean [95% bootstrap interval]); * = paired bootstrap p < 0.05",
             metric_table(report)),
            ("published", f"Published numbers on this data ({report['published']['source']})"
             if report["published"] else "Published numbers", published_table(report)),
            *([("convergence", "Budget and convergence per row (converged: validation flat over the last 20% of "
                                "training; a row that did not converge is not a verdict)", convergence_table(report))]
              if report.get("convergence") else []),
            *([("claims", "Published claims tested on these rows (verdict from the NDCG@10 interval: holds above "
                           "0, reversed below 0, not shown across 0)", claims_table(report))]
              if report.get("claims") else []),
            ("training", "Methods and training cost", training_table(report)),
            *([("generated", "Generated item texts and their cost (captions, interest tags)", generated)]
              if generated[1] else []),
            ("tokenizers", "Tokenizer diagnostics", tokenizer_table(report)),
            *analysis_sections(report.get("analyses") or {})]


def about(report: dict[str, Any]) -> list[str]:
    stats = report["data"]["stats"]
    return [f"Dataset {report['dataset']}: {stats['users']:,} users, {stats['items']:,} items, "
            f"{stats['interactions']:,} interactions (fingerprint {report['data']['fingerprint'][:12]}).",
            f"Protocol: {report['protocol'].get('targets', '')}; {report['protocol'].get('metrics', '')}.",
            f"Written {report['created']} by mmgr {report['mmgr_version']} (commit {report['commit'] or '-'}) on "
            f"{report['device']}" + (f": `{report['command']}`" if report["command"] else "") + ".",
            *(f"Caveat: {line}" for line in caveats(report))]


def markdown(report: dict[str, Any]) -> str:
    lines = [f"# {report['title']}", "", *about(report), ""]
    for _, heading, table in sections(report):
        lines += [f"## {heading}", ""]
        if table is None:
            lines += ["No published table matches this dataset's statistics.", ""]
            continue
        header, cells = table
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells] + [""]
    lines += ["## Figures", ""] + [f"![{f['caption']}]({f['file']})\n\n*{f['caption']}*\n" for f in report["figures"]]
    notes = [f"- {r['name']}: {n}" for r in report["rows"] for n in r["notes"]]
    return "\n".join(lines + (["## Notes", "", *notes, ""] if notes else []))


STYLE = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:13px}th,td{border:1px solid #ccc;padding:4px 8px}
th{background:#f2f2f2}td{text-align:right}td:first-child,td.text{text-align:left}figure{margin:1em 0}
img{max-width:100%;border:1px solid #eee}figcaption{font-size:13px;color:#555}"""

TEXT = " class='text'"                  # left-aligned: words, not numbers
TEXT_COLUMNS = {"runs", "description", "engine", "layout", "modalities", "objective", "tokenizer", "modality", "text",
                "model"}


def page(report: dict[str, Any], folder: Path) -> str:
    """One HTML page with every table and every figure inlined (opens without the figures folder)."""
    esc = html.escape
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{esc(report['title'])}</title>"
             f"<style>{STYLE}</style></head><body><h1>{esc(report['title'])}</h1>"]
    parts += [f"<p>{esc(line)}</p>" for line in about(report)]
    for key, heading, table in sections(report):
        parts.append(f"<h2>{esc(heading)}</h2>")
        if table is None:
            parts.append("<p>No published table matches this dataset's statistics.</p>")
            continue
        header, cells = table
        parts.append(f"<table id='{key}'><thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header)
                     + "</tr></thead><tbody>" + "".join(
                         "<tr>" + "".join(f"<td{TEXT if h in TEXT_COLUMNS else ''}>{esc(c)}</td>"
                                          for h, c in zip(header, row, strict=True)) + "</tr>" for row in cells)
                     + "</tbody></table>")
    parts.append("<h2>Figures</h2>")
    for figure in report["figures"]:
        data = base64.b64encode((folder / figure["file"]).read_bytes()).decode()
        parts.append(f"<figure id='figure-{esc(figure['key'])}'><img alt='{esc(figure['caption'])}' "
                     f"src='data:image/png;base64,{data}'><figcaption>{esc(figure['caption'])}</figcaption></figure>")
    notes = [f"{r['name']}: {n}" for r in report["rows"] for n in r["notes"]]
    if notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul>")
    return "".join(parts) + "</body></html>"


def write(report: dict[str, Any], out: Path) -> dict[str, Path]:
    """report.json, report.md and report.html in `out` (figures already under out/figures)."""
    paths = {"json": out / "report.json", "markdown": out / "report.md", "html": out / "report.html"}
    write_json_atomic(paths["json"], report)
    write_bytes_atomic(paths["markdown"], markdown(report).encode())
    write_bytes_atomic(paths["html"], page(report, out).encode())
    return paths
