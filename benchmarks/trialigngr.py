"""TriAlignGR (arXiv 2605.05249) on one dataset: TIGER-text (T5), the causal backbone on the same text SIDs, then
TMT on the causal backbone: original text SIDs + the six text tasks, CMSA+MDIM SIDs + the six text tasks, and the
full eight tasks; same data, seed, generator size and step budget for every row; paired bootstrap against
TIGER-text and against the causal next-item row; with --ladder, the CMSA+MDIM model as tasks are added one by one.
Analyses: SID reconstruction cosine by depth (text vs CMSA codes), a t-SNE map of items coloured by first code,
how well the model writes an item's title from its SID (exact-match rate; semantic opacity), time to caption and
mine interests for the catalog, training samples/s of each generator.

    python benchmarks/trialigngr.py --dataset ml-100k --steps 1000
    python benchmarks/trialigngr.py --dataset ml-100k --steps 1000 --ladder
    python benchmarks/trialigngr.py --dataset beauty --steps 1000     (text only: the visual tasks drop out)
    python benchmarks/trialigngr.py --dataset scientific --steps 1000 (text only, 4,344 items, RQ-KMeans 3 x 64)
    python benchmarks/trialigngr.py --dataset scientific --steps 5000 --tag 5k --variants causal-text text-six
        (rows of another budget beside the default ones: runs, results and summary rows named <row>-5k)
    python benchmarks/trialigngr.py --dataset ml-100k --steps 100 --variants trialigngr-llm
        (the eight tasks on gemma-3-270m with LoRA, batch 16; on a GPU: benchmarks/gpu_trialigngr_llm.sh)

Runs live in runs/trialigngr-<dataset>/<row> (a finished row with the same config is reused). Writes
benchmarks/results/quality-<dataset>-trialigngr-<row>.json per row, trialigngr-<dataset>-summary.json and PNGs.
The paper's generator is a fine-tuned LLM; here every row is the same small model (d_model 64, 2 layers) trained
from scratch on 2 CPU cores, and the SIDs of every row come from the same quantizer (residual k-means, 3 x 32 on
MovieLens), so the rows differ only in features (original text vs CMSA+MDIM) and tasks. The `trialigngr-llm` row
is the paper's kind of generator: the pretrained gemma-3-270m (offline) with the SID tokens appended and LoRA
adapters, batch 16; its step budget is its own (--steps of the run that trained it, recorded in its row).
Rows of earlier runs of this script stay in the summary (each row records its own budget).
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import t5_rows  # noqa: E402

from mmgr.config import Config  # noqa: E402
from mmgr.encoders.features import load_features  # noqa: E402
from mmgr.evaluation.sid_map import first_code_purity, item_map, plot_item_map  # noqa: E402
from mmgr.evaluation.significance import compare_runs  # noqa: E402
from mmgr.inference.ranker import load_ranker  # noqa: E402
from mmgr.rundir import RunDir  # noqa: E402
from mmgr.tokenizers.codes import ModalityCodes  # noqa: E402

ROOT = t5_rows.ROOT
CAUSAL = ["model.kind=causal", "model.layout=single"]
TEXT_SIDS = ["model.modalities=[text]"]
CMSA_MDIM = ["model.modalities=[fused]", "encoders.text.fields=[title,description,caption,interests]"]
SIX = ["sid->title", "title->sid", "interests->sid", "sid->interests", "history->title"]   # + history -> next SID
EIGHT = [*SIX, "visdesc->sid", "visdesc->title"]


def tmt(tasks: list[str]) -> list[str]:
    return ["training.objective=tmt", f"training.tmt.tasks=[{','.join(tasks)}]"]


VARIANTS = {
    "tiger-text": [*TEXT_SIDS, "model.kind=t5", "model.layout=single"],
    "causal-text": [*CAUSAL, *TEXT_SIDS],
    "text-six": [*CAUSAL, *TEXT_SIDS, *tmt(SIX)],
    "cmsa-mdim-six": [*CAUSAL, *CMSA_MDIM, *tmt(SIX)],
    "trialigngr": [*CAUSAL, *CMSA_MDIM, *tmt(EIGHT)],
}
LLM = ["model.kind=llm", "model.layout=single", "training.batch_size=16", "training.lr=0.001",
       "training.warmup_steps=20", "training.eval_users=200", "decoding.batch_size=64"]
VARIANTS["trialigngr-llm"] = [*LLM, *CMSA_MDIM, *tmt(EIGHT)]
VARIANTS["trialigngr-llm-gpu"] = [*VARIANTS["trialigngr-llm"], "training.accelerator=gpu", "training.batch_size=64",
                                  "training.lr=0.0005", "training.eval_users=943", "training.eval_every_steps=250",
                                  "decoding.batch_size=256"]
VARIANTS["trialigngr-llm-gpu-check"] = VARIANTS["trialigngr-llm-gpu"]   # the GPU script's tiny CPU check
LADDER = {f"ladder-{i}": [*CAUSAL, *CMSA_MDIM, *tmt(EIGHT[:i])] for i in range(1, len(EIGHT))}
LADDER["ladder-0"] = [*CAUSAL, *CMSA_MDIM]                                # history -> next SID alone


def row_config(args, name: str) -> Config:
    return t5_rows.variant_config(args.dataset, name, args, {**VARIANTS, **LADDER})


def run_row(args, folder: Path, base: RunDir, name: str, row: str) -> dict[str, Any]:
    """Variant `name` trained (or reused) as row `row` (the name plus any --tag)."""
    config = row_config(args, name)
    run = t5_rows.variant_run(base, folder, row)
    t5_rows.ensure_row(run, config, f"{args.dataset} {row}")
    manifest = run.manifest()
    results, train = json.loads((run.path / "results.json").read_text()), manifest["stages"]["train"]
    return {"run": run.path.relative_to(ROOT).as_posix(), "test": results["test"], "valid": results["valid"],
            "fallback": manifest["stages"]["pipeline"]["fallback"], "tasks": config.training.tmt.tasks
            if config.training.objective == "tmt" else [],
            "train": {k: train.get(k) for k in ("steps", "epochs_run", "best_epoch", "train_seconds",
                                                 "samples_per_second", "target_tokens_per_second", "train_examples",
                                                 "parameters", "trainable_parameters")},
            "budget": {"steps": config.training.max_steps, "batch_size": config.training.batch_size},
            "seconds": t5_rows.row_seconds(manifest)}


def generated_text_cost(run: RunDir) -> dict[str, Any]:
    """How long the catalog's captions and interest tags took (cache misses only count in a fresh cache)."""
    stages = run.manifest()["stages"]
    return {name: {k: stages[f"encode.{name}"].get(k) for k in ("items", "wall_seconds", "model_id", "computed",
                                                                 "from_cache", "items_per_s", "empty", "unreadable")}
            for name in ("caption", "interests") if f"encode.{name}" in stages}


def sid_diagnostics(run: RunDir, modality: str) -> dict[str, Any]:
    stage = run.manifest()["stages"].get(f"tokenize.{modality}", {})
    return {k: stage.get(k) for k in ("codebook_sizes", "reconstruction_cosine", "collision_rate_before",
                                      "utilisation")}


def title_fidelity(run: RunDir, items: int, seed: int) -> dict[str, Any]:
    """Exact-match rate of the titles the model writes from a seeded sample of items' SIDs, with examples."""
    config = run.config()
    ranker = load_ranker(run, config)
    titles = ranker.data.dataset.items["title"].to_pylist()
    sample = np.random.default_rng(seed).choice(len(titles), min(items, len(titles)), replace=False).tolist()
    written = ranker.explain(sample)
    exact = [w.get("title", "").lower() == titles[i].lower() for i, w in zip(sample, written, strict=True)]
    return {"items": len(sample), "title_exact_match": float(np.mean(exact)),
            "examples": [{"title": titles[i], **w} for i, w in zip(sample[:8], written[:8], strict=True)]}


def sid_map(run: RunDir, modality: str, path: Path) -> dict[str, Any]:
    fingerprint = run.manifest()["dataset"]["fingerprint"]
    features = load_features(run.path, modality, fingerprint)
    codes = ModalityCodes.load(run.path / "codes" / f"{modality}.safetensors")
    present = np.flatnonzero(~features.missing)
    rows, coords = item_map(features.vectors[present])
    first = codes.codes[present[rows], 0]
    plot_item_map(coords, first, path, f"{run.path.name}: items by first {modality} code (t-SNE)")
    return {"items": len(rows), "first_code_neighbour_purity@10": first_code_purity(coords, first),
            "plot": path.name}


def with_earlier_rows(path: Path, rows: dict[str, Any], analyses: dict[str, Any]
                      ) -> tuple[dict[str, Any], dict[str, Any]]:
    """This run's rows and analyses with those of the summary at `path` that it did not recompute; every row keeps
    the command that trained it."""
    for row in rows.values():
        row.update(command=common.command(), device=common.describe_device(), commit=common.git_commit())
    if not path.is_file():
        return rows, analyses
    earlier = json.loads(path.read_text())
    kept = {name: {"command": earlier["command"], "device": earlier["device"], "commit": earlier["commit"], **row}
            for name, row in earlier["metrics"]["rows"].items() if name not in rows}
    merged = {key: value for key, value in earlier["metrics"]["analyses"].items()   # cache hits read as cost
              if not (key == "generated_text_cost" and any("computed" not in v for v in value.values()))}
    merged.update(analyses)
    merged["title_from_sid"] = {**earlier["metrics"]["analyses"].get("title_from_sid", {}),
                                **analyses.get("title_from_sid", {})}
    return {**kept, **rows}, merged


def main() -> None:
    parser = t5_rows.parser_for(__doc__.split("\n")[0], [*VARIANTS, *LADDER], list(VARIANTS))
    parser.add_argument("--ladder", action="store_true", help="also train the tasks-added-one-by-one rows")
    parser.add_argument("--tag", default="", help="suffix of this run's row names (runs, results, summary rows), "
                                                  "e.g. rows of a longer budget beside the default ones")
    args = parser.parse_args()
    variants = [*args.variants, *(sorted(LADDER) if args.ladder else [])]
    row_name = {variant: f"{variant}-{args.tag}" if args.tag else variant for variant in variants}
    if args.tag and not re.fullmatch(r"[A-Za-z0-9_.]+", args.tag):
        parser.error(f"--tag {args.tag!r}: use letters, digits, '_' and '.' (it names run folders)")
    if args.tag and (taken := set(row_name.values()) & {*VARIANTS, *LADDER}):
        parser.error(f"--tag {args.tag!r} would name rows like other variants: {', '.join(sorted(taken))}")
    names = list(row_name.values())
    name = t5_rows.DATASETS[args.dataset][0]
    started = time.perf_counter()
    folder = ROOT / "runs" / f"trialigngr-{args.dataset}"
    base = t5_rows.base_run(args.dataset, row_config(args, "tiger-text"), folder)
    rows = {}
    for variant, row in row_name.items():
        rows[row] = {"variant": variant, **run_row(args, folder, base, variant, row)}
        for baseline in ("tiger-text", "causal-text"):              # of this run's budget (tag)
            if variant != baseline and row_name.get(baseline) in rows:
                rows[row][f"vs_{baseline}"] = compare_runs(folder / row_name[baseline], folder / row, "test",
                                                           ("ndcg@5", "ndcg@10", "hr@5", "hr@10"), resamples=2000)
        common.write_result("quality", name, f"trialigngr-{row}",
                            {k: v for k, v in rows[row]["test"].items() if "@" in k}, split="test",
                            wall_seconds=rows[row]["seconds"], config=RunDir(folder / row).manifest()["config"],
                            extra={key: rows[row].get(key) for key in ("train", "fallback", "tasks",
                                                                         "vs_tiger-text", "vs_causal-text")})
    cost = generated_text_cost(RunDir(folder / names[-1]))
    cold = any(stage.get("computed") for stage in cost.values())    # a warm cache measures cache hits only
    analyses: dict[str, Any] = {"generated_text_cost" if cold else "generated_text_cost_cache_hits": cost}
    for row, modality in (("causal-text", "text"), ("trialigngr", "fused")):  # SIDs do not depend on the budget
        if row in rows and not rows[row]["fallback"]:
            run = RunDir(folder / row)
            analyses[f"sids_{row}"] = sid_diagnostics(run, modality)
            analyses[f"map_{row}"] = sid_map(run, modality, common.RESULTS / f"trialigngr-{name}-map-{row}.png")
    for row in names:
        if rows[row]["tasks"] and "sid->title" in rows[row]["tasks"]:
            analyses.setdefault("title_from_sid", {})[row] = title_fidelity(RunDir(folder / row), 200, 0)
    rows, analyses = with_earlier_rows(common.RESULTS / f"trialigngr-{name}-summary.json", rows, analyses)
    summary = {"rows": rows, "analyses": analyses,
               "paper": {"note": "TriAlignGR reports up to +13.6% HR@5 and +15.5% NDCG@5 over its strongest "
                                 "baseline (Amazon Beauty, Sports, Toys; fine-tuned LLM generator)"},
               "budget": {"note": "each row records its own budget, device, commit and command (rows of earlier "
                                  "runs of this script are kept); the rows of one run share one step budget, "
                                  "which the tmt rows spread over their tasks"}}
    common.write_result("trialigngr", name, "summary", summary, split="test",
                        wall_seconds=time.perf_counter() - started,
                        config={"shared": t5_rows.SHARED, "variants": {r: {**VARIANTS, **LADDER}[row.get("variant", r)]
                                                                   for r, row in rows.items()},
                                "max_history": args.history})


if __name__ == "__main__":
    main()
