"""Rewrite the generated tables and numbers of README.md and docs/*.md from benchmarks/results/*.json.

Each table sits between `<!-- table:NAME -->` and `<!-- /table:NAME -->`, each number of the prose between
`<!-- value FILE PATH FORMAT -->` and `<!-- /value -->` (`mmgr.report.inline`); the text between two markers belongs
to this script. Run `python docs/tables.py` after a benchmark writes its results, and commit both;
`python docs/tables.py --check` exits 1, naming the stale files, when a table no longer matches its results.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mmgr.report.document import difference, verdict_text
from mmgr.report.inline import MarkerError, fill_values, json_reader
from mmgr.report.paired import bootstrap_text
from mmgr.report.suite_tables import DASH, count, metric, num, render_suite, table

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
READ = json_reader(RESULTS)                  # results files by name, each parsed once
MARKER = re.compile(r"(<!-- table:([a-z0-9-]+) -->)(.*?)(<!-- /table:\2 -->)", re.DOTALL)


def load(name: str) -> dict[str, Any]:
    return json.loads((RESULTS / name).read_text())


def code(text: str) -> str:
    return f"`{text}`"


# --- README: headline -------------------------------------------------------------------------------------------

HEADLINE_METRICS = ["hr@5", "ndcg@5", "hr@10", "ndcg@10"]


def budget(train: dict[str, Any] | None) -> str:
    """Steps, epochs and minutes of training, as far as the file records them."""
    if not train:
        return DASH
    parts = []
    if train.get("steps") is not None:
        parts.append(f"{train['steps']:,} steps")
    if train.get("epochs_run") is not None:
        epochs = train["epochs_run"]
        parts.append("under 1 epoch" if epochs == 0 else f"{epochs} epochs")
    if train.get("train_seconds") is not None:
        parts.append(f"{train['train_seconds'] / 60:.0f} min")
    return ", ".join(parts) or DASH


def headline() -> str:
    rows = []

    def measured(dataset: str, label: str, file: str) -> dict[str, Any]:
        data = load(file)
        train = data.get("training") or data.get("train")
        rows.append([dataset, label, *(num(metric(data["metrics"], m)) for m in HEADLINE_METRICS), budget(train),
                     code(file)])
        return data

    def published(dataset: str, label: str, data: dict[str, Any], key: str, source: str) -> None:
        values = data["reference"]["metrics"][key]     # the published numbers the results file compares against
        rows.append([dataset, label, *(num(metric(values, m)) for m in HEADLINE_METRICS), "published", source])

    beauty = measured("Beauty", "TIGER SIDs (LETTER), item-level causal backbone, hidden dropout 0.3",
                      "quality-amazon-beauty-2014-tiger-item-causal-letter-hidden-dropout-full-hour.json")
    published("Beauty", "TIGER (paper)", beauty, "tiger", "TIGER paper, Rajput et al. 2023")
    sasrec = measured("Beauty", "SASRec-CE", "quality-amazon-beauty-2014-sasrec.json")
    published("Beauty", "SASRec (TIGER's table)", sasrec, "tiger_table", "TIGER paper's SASRec row")
    measured("Beauty", "TIGER, RQ-VAE SIDs, TIGER-size T5", "quality-amazon-beauty-2014-tiger.json")
    arts = json.loads((RESULTS / "suite-arts" / "summary.json").read_text())
    for row in arts["rows"]:                     # the mean over the row's seeds
        minutes = " / ".join(f"{s / 60:.0f}" for s in row["train_seconds"])
        epochs = " / ".join(str(e) for e in row["epochs"])
        seeds = f"mean of {len(row['seeds'])} seeds, " if len(row["seeds"]) > 1 else ""
        state = "converged" if row["converged"] else "NOT converged"
        rows.append(["Arts", f"{row['name']}: {row['description']}",
                     *(num(row["metrics"][m]) for m in HEADLINE_METRICS),
                     f"{seeds}{epochs} epochs, {minutes} min, {state}",
                     code("suite-arts/summary.json")])
    for name, values in arts["published"]["rows"].items():
        rows.append(["Arts", f"{name} (published)", *(num(values[m]) for m in HEADLINE_METRICS), "published",
                     "MACRec paper, Table 2"])
    header = ["data", "method", "HR@5", "NDCG@5", "HR@10", "NDCG@10", "training", "source"]
    return table(header, rows)


# --- docs/benchmarks.md -----------------------------------------------------------------------------------------

def speed() -> str:
    rows = []
    text = load("encoders-amazon-beauty-2014-text-all-MiniLM-L6-v2.json")
    rows.append(["text encoder (MiniLM), Beauty titles",
                 f"{text['metrics']['items_per_second']:.0f} items/s for {text['metrics']['items']:,} items; "
                 f"cache hit {text['metrics']['cache_hit_speedup']:.0f}x faster", code(text["command"])])
    image = load("encoders-movielens-100k-posters-image-efficientnet-lite0.json")["metrics"]
    graphs = image.get("by_graph", {})
    rows.append(["image encoder (EfficientNet-Lite0), MovieLens posters",
                 f"{graphs['compile']['items_per_second']:.0f} images/s compiled, "
                 f"{graphs['eager']['items_per_second']:.0f} eager, {image['items']:,} images; "
                 f"cache hit {image['cache_hit_speedup']:.0f}x",
                 code(load("encoders-movielens-100k-posters-image-efficientnet-lite0.json")["command"])])
    for file, what in [("encoders-movielens-100k-posters-caption-offline-describer.json", "offline captions"),
                       ("encoders-amazon-scientific-2018-interests-gemma3-270m.json",
                        "interest tags (gemma-3-270m), Scientific")]:
        data = load(file)
        rows.append([what, f"{data['metrics']['items_per_second']:.1f} items/s for {data['metrics']['items']} items",
                     code(data["command"])])
    for dataset, label in [("amazon-beauty-2014", "Beauty"), ("amazon-scientific-2018", "Scientific")]:
        for method, name in [("rq-kmeans", "RQ-KMeans"), ("rq-vae", "RQ-VAE")]:
            data = load(f"tokenizers-{dataset}-{method}-text.json")
            m = data["metrics"]
            rows.append([f"{name} 3 x 256, {label} text",
                         f"fit {m['fit_seconds']:.1f} s; {100 * m['collision_rate_before']:.1f}% of items collide "
                         f"before resolution, {100 * m['collision_rate_after']:.1f}% after", code(data["command"])])
    for file, what in [("decoding-amazon-beauty-2014-tiger-beam20.json", "constrained beam search, T5 (beam 20)"),
                       ("decoding-amazon-beauty-2014-causal-beam20.json",
                        "constrained beam search, causal backbone (beam 20)")]:
        data = load(file)
        m = data["metrics"]
        rows.append([what, f"{m['users_per_second']:.1f} users/s vs {m['hf_generate_users_per_second']:.1f} for HF "
                           f"`generate` ({m['speedup_vs_hf_generate']:.1f}x) on {m['users']:,} Beauty users; same "
                           f"top-10 order for {100 * m['top10_order_agreement']:.0f}% of users, "
                           f"{m['returned_non_items']} non-items", code(data["command"])])
    data = load("training-amazon-beauty-2014-tiger.json")
    m = data["metrics"]
    rows.append(["TIGER-size T5 training step, Beauty, batch 256",
                 f"{m['samples_per_second']:.0f} samples/s eager, {m['compiled_samples_per_second']:.0f} compiled "
                 f"({m['speedup_compiled_vs_eager']:.2f}x); peak {m['peak_memory_mb'] / 1024:.1f} GB",
                 code(data["command"])])
    return table(["what", "measured", "command"], rows)


def beauty() -> str:
    files = [("sasrec", "SASRec-CE"), ("tiger", "TIGER: RQ-VAE SIDs, TIGER-size T5"),
             ("tiger-causal-letter", "causal backbone, LETTER SIDs"),
             ("tiger-item-causal-letter", "item-level causal backbone, LETTER SIDs (35 min)"),
             ("tiger-item-causal-letter-hidden-dropout", "+ hidden dropout 0.3 (35 min)"),
             ("tiger-item-causal-letter-hidden-dropout-hour", "+ hidden dropout, 60 min, patience 6"),
             ("tiger-item-causal-letter-hidden-dropout-no-early-stop", "+ hidden dropout, 55 min, no early stop"),
             ("tiger-item-causal-letter-hidden-dropout-full-hour", "+ hidden dropout, 60 min, no early stop")]
    rows, reference = [], None
    for method, label in files:
        data = load(f"quality-amazon-beauty-2014-{method}.json")
        train = data.get("training") or {}
        rows.append([label, *(num(metric(data["metrics"], m)) for m in HEADLINE_METRICS), budget(train),
                     str(train.get("best_epoch", DASH)), code(data["command"])])
        if method == "tiger-item-causal-letter-hidden-dropout-full-hour":
            reference = data["reference"]
    for key, label in [("tiger", "TIGER paper"), ("sasrec", "SASRec, TIGER's table")]:
        rows.append([f"{label} (published)", *(num(metric(reference["metrics"][key], m)) for m in HEADLINE_METRICS),
                     DASH, DASH, DASH])
    return table(["row", "HR@5", "NDCG@5", "HR@10", "NDCG@10", "training", "best epoch", "command"], rows)


def serve_load() -> str:
    rows = []
    for dataset in ("beauty-item-causal", "beauty", "synthetic"):
        data = load(f"serve-{dataset}-load.json")
        for point in data["metrics"]:
            batch = point["mean_batch_size"]
            rows.append([dataset, point["batching"], str(point.get("processes", 1)), str(point.get("workers", 1)),
                         str(point["concurrency"]), f"{point['requests_per_second']:.1f}",
                         f"{point['p50_ms']:.0f}", f"{point['p99_ms']:.0f}", DASH if batch is None else f"{batch:.1f}",
                         str(point["errors"]), num(point.get("server_cpu_share"), 2),
                         num(point.get("client_cpu_share"), 3)])
    targets = [f"{t['name']}: {t['value']} ({'met' if t['met'] else 'NOT met'}" + server_setting(t) + ")"
               for t in load("serve-beauty-item-causal-load.json").get("targets", [])]
    return table(["bundle", "micro-batching", "processes", "decoding workers", "clients", "requests/s", "p50 ms",
                  "p99 ms", "mean batch", "errors", "server CPU", "client CPU"], rows) + \
        "\n\nTargets (beauty-item-causal): " + "; ".join(targets) + "."


def server_setting(target: dict[str, Any]) -> str:
    """", N processes x M decoding workers" of the server a serving target was judged on ("" when not recorded)."""
    if not target.get("workers"):
        return ""
    processes, workers = target.get("processes") or 1, target["workers"]
    return (f", {processes} process{'es' * (processes != 1)} x {workers} decoding worker"
            f"{'s' * (workers != 1)}")


def catalog_scale() -> str:
    data = load("catalog-scale-synthetic-serving.json")["metrics"]
    rows = [[f"{s['items']:,}", num(s["collision_rate"], 3), str(s["largest_collision_group"]),
             f"{s['build_seconds']:.2f}", f"{s['trie_bytes'] / 2**20:.0f}",
             f"{s['build_peak_rss_delta_bytes'] / 2**20:.0f}",
             f"{s['requests_per_second']:.1f}", f"{s['p50_ms']:.0f}", f"{s['p99_ms']:.0f}",
             f"{s['onboard_median_ms']:.0f}", f"{s['onboard_max_ms']:.0f}"] for s in data["sizes"]]
    targets = [f"{t['target']}: {'met' if t['met'] else 'NOT met'}" for t in data["targets"].values()]
    return table(["items", "collision rate", "largest group", "trie build s", "trie MiB", "build peak RSS MiB",
                  "requests/s (8 clients)", "p50 ms", "p99 ms", "onboarding median ms", "onboarding max ms"],
                 rows) + "\n\nTargets: " + "; ".join(targets) + "."


def cold_start() -> str:
    rows, notes = [], []
    for dataset in ("synthetic", "movielens-100k-posters"):
        data = load(f"cold-start-{dataset}-summary.json")
        for method, parts in data["metrics"].items():
            held, every = parts["held_out_targets"], parts["all_targets"]
            rows.append([dataset, method, num(held["hr@10"]), num(held["ndcg@10"]), num(every["hr@10"]),
                         num(every["ndcg@10"]), num(data["coverage"][method]["held_out_share_of_slots"], 3)])
        counts = data["counts"]
        notes.append(f"{dataset}: {counts['held_out_items']} of {counts['catalog_items']} items held out, "
                     f"{counts['held_out_test_events']} of {counts['test_events']} test events target one "
                     f"(`{data['command']}`)")
    return table(["dataset", "method", "held-out HR@10", "held-out NDCG@10", "all HR@10", "all NDCG@10",
                  "held-out share of top-10 slots"], rows) + "\n\n" + "; ".join(notes) + "."


def fault() -> str:
    m = load("serve-synthetic-fault.json")["metrics"]
    keys = ["trials", "whole", "none", "damaged", "restart_failed", "acknowledged", "lost_after_ack", "recommend_ok",
            "orphan_images"]
    return table(keys, [[str(m[k]) for k in keys]])


def fuzz() -> str:
    m = load("fuzz.json")["metrics"]
    keys = ["tried", "accepted", "rejected_named", "crashes", "silent_misreads"]
    return table(keys, [[str(m[k]) for k in keys]])


COMPARISON = ["hr@1", "hr@5", "hr@10", "ndcg@5", "ndcg@10", "mrr@20"]


def versus_text(test: dict[str, Any] | None, metric_name: str = "ndcg@10") -> str:
    if not test:
        return DASH
    return bootstrap_text(test["metrics"][metric_name])


TRIALIGNGR_LABELS = {"tiger-text": "TIGER-text (T5)", "causal-text": "causal backbone, text SIDs, next-item only",
                     "text-six": "TMT, text SIDs, six text tasks",
                     "cmsa-mdim-six": "TMT, CMSA+MDIM SIDs, six text tasks",
                     "trialigngr": "TriAlignGR: CMSA+MDIM SIDs, eight tasks",
                     "trialigngr-llm": "TriAlignGR, gemma-3-270m + LoRA, eight tasks"}
TRIALIGNGR_METRICS = ["hr@5", "hr@10", "ndcg@5", "ndcg@10"]


def trialigngr(file: str, names: list[str] | None = None, ladder: bool = False) -> Callable[[], str]:
    def render() -> str:
        rows_in = load(file)["metrics"]["rows"]
        rows, commands = [], []
        for name, row in rows_in.items():
            if names is not None and name not in names:
                continue
            if names is None and name.startswith("ladder-") != ladder:
                continue
            label = name if ladder else TRIALIGNGR_LABELS.get(name.split("-3k")[0], name)
            if name.endswith("-3k"):
                label += ", 3,000-step budget"
            train = row.get("train") or {}
            first = ["+ " + row["tasks"][-1] if row["tasks"] else "none"] if ladder else []
            rows.append([label, *first, *(num(row["test"][m]) for m in TRIALIGNGR_METRICS), count(train.get("steps")),
                         count(train.get("samples_per_second"))])
            if row.get("command") and row["command"] not in commands:
                commands.append(row["command"])
        header = ["row", *(["tasks besides history -> next SID"] if ladder else []), "HR@5", "HR@10", "NDCG@5",
                  "NDCG@10", "steps", "samples/s"]
        return table(header, rows) + "\n\nCommands: " + "; ".join(f"`{c}`" for c in commands)

    return render


def suite(name: str) -> Callable[[], str]:
    def render() -> str:
        path = RESULTS / f"suite-{name}" / "summary.json"
        return render_suite(json.loads(path.read_text()) if path.exists() else None)

    return render


CLAIM_SUITES = ("arts", "ml-100k", "synthetic")


def claims() -> str:
    """Every suite's tested claims in one table, paper by paper (suites not run yet are left out)."""
    rows = []
    for name in CLAIM_SUITES:
        path = RESULTS / f"suite-{name}" / "summary.json"
        for c in json.loads(path.read_text()).get("claims", []) if path.exists() else []:
            measured = DASH if c["test"] is None else difference(c["test"], "ndcg@10")
            rows.append([c["paper"], c["claim"], name, f"{c['row']} - {c['versus']}", measured, verdict_text(c)])
    rows.sort(key=lambda r: r[0])                                        # stable: suites in order within a paper
    return table(["paper", "claim", "suite", "rows", "NDCG@10 diff [95% CI], p", "verdict"], rows)


TABLES: dict[str, Callable[[], str]] = {
    "headline": headline,
    "claims": claims,
    "speed": speed,
    "beauty": beauty,
    "serve-load": serve_load,
    "serve-fault": fault,
    "catalog-scale": catalog_scale,
    "cold-start": cold_start,
    "fuzz": fuzz,
    "trialigngr-ml-100k": trialigngr("trialigngr-movielens-100k-posters-summary.json",
                                     ["tiger-text", "causal-text", "text-six", "cmsa-mdim-six", "trialigngr",
                                      "trialigngr-llm"]),
    "trialigngr-ladder": trialigngr("trialigngr-movielens-100k-posters-summary.json", ladder=True),
    "trialigngr-scientific": trialigngr("trialigngr-amazon-scientific-2018-summary.json"),
    "trialigngr-beauty": trialigngr("trialigngr-amazon-beauty-2014-summary.json"),
    "suite-arts": suite("arts"),
    "suite-synthetic": suite("synthetic"),
    "suite-ml-100k": suite("ml-100k"),
}


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def rewrite(text: str, where: str) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(2)
        if name not in TABLES:
            raise SystemExit(f"{where}: unknown table {name!r} (known: {', '.join(sorted(TABLES))})")
        return f"{match.group(1)}\n\n{TABLES[name]()}\n\n{match.group(4)}"

    try:
        return fill_values(MARKER.sub(replace, text), READ)
    except MarkerError as exc:
        raise SystemExit(f"{where}: {exc}") from exc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a file is stale")
    args = parser.parse_args(argv)
    stale = []
    for path in documents():
        text = path.read_text()
        new = rewrite(text, str(path.relative_to(ROOT)))
        if new != text:
            stale.append(path.relative_to(ROOT))
            if not args.check:
                path.write_text(new)
    if args.check and stale:
        print("stale generated tables (run `python docs/tables.py`): " + ", ".join(map(str, stale)), file=sys.stderr)
        return 1
    print(("stale: " if args.check else "rewrote: ") + (", ".join(map(str, stale)) or "nothing"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
