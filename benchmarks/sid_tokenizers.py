"""Semantic-ID tokenizers on real text features: fit time, collisions before resolution, codebook use, and the
published SID tables of the same datasets in the same run. (Not named tokenizers.py: that would shadow the
`tokenizers` package for scripts in this folder.)

    python benchmarks/sid_tokenizers.py [--datasets beauty,scientific,ml-100k] [--methods rq-kmeans,rq-vae]

Runs the real pipeline (import -> encode -> tokenize) into runs/bench-<dataset>/ (features cached in the content
cache, so re-runs only refit) and writes benchmarks/results/tokenizers-<dataset>-<method>.json.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from common import SHARED_DATA, write_result

from mmgr.config import load_config
from mmgr.data.importer import import_into_run
from mmgr.encoders.stage import encode_run
from mmgr.rundir import RunDir
from mmgr.tokenizers.collisions import collision_rate
from mmgr.tokenizers.external import read_index
from mmgr.tokenizers.stage import tokenize_run

ROOT = Path(__file__).resolve().parents[1]
DATASETS = {  # name -> (folder, format, modalities, published SID tables, table alignment)
    "beauty": ("amazon-beauty-2014", "p5", ["text"], ["lcrec/Beauty.index.json"], "row"),
    "scientific": ("amazon-scientific-2018", "lcrec", ["text"],
                   [f"indexes/{n}.Scientific.index.json" for n in ("rqvae_native", "letter_native", "mql4grec")],
                   "item_id"),
    "ml-100k": ("movielens-100k-posters", "recbole", ["text", "image"], [], "item_id"),
}
KEYS = ("collision_rate_before", "distinct_tuples_before", "max_items_per_tuple_before", "fit_seconds")


def prepared_run(name: str) -> RunDir:
    folder, fmt, modalities, _, _ = DATASETS[name]
    run = RunDir(ROOT / "runs" / f"bench-{name}")
    if not run.exists():
        config = load_config(overrides=[f"data.format={fmt}", f"data.path={SHARED_DATA / folder}"])
        import_into_run(config, run.path)
    for modality in modalities:
        if f"encode.{modality}" not in run.manifest()["stages"]:
            encode_run(run, modality, run.config(), progress=False)
    return run


def published(name: str, run: RunDir) -> dict:
    folder, _, _, tables, align = DATASETS[name]
    from mmgr.data.dataset import Dataset

    item_ids = Dataset.load(run.path).items["item_id"].to_pylist()
    out = {}
    for table in tables:
        codes = read_index(SHARED_DATA / folder / table, item_ids, align)
        out[Path(table).name] = {"collision_rate": collision_rate(codes), "levels": int(codes.shape[1]),
                                 "distinct_tuples": len({tuple(r) for r in codes.tolist()})}
    return out


def bench(name: str, method: str) -> None:
    run = prepared_run(name)
    reference = published(name, run)
    for modality in DATASETS[name][2]:
        config = run.config([f"tokenizer.method={method}"])
        report = tokenize_run(run, modality, config)
        metrics = {key: report[key] for key in KEYS}
        metrics["collision_rate_after"] = report["collision_rate_after_all_items"]
        for level, (used, ppl, cos) in enumerate(zip(report["utilisation"], report["perplexity"],
                                                     report["reconstruction_cosine"], strict=True), start=1):
            metrics[f"utilisation@level{level}"] = used
            metrics[f"perplexity@level{level}"] = ppl
            metrics[f"reconstruction_cosine@depth{level}"] = cos
        write_result("tokenizers", DATASETS[name][0], f"{method}-{modality}", metrics,
                     wall_seconds=report["fit_seconds"], config=config.tokenizer.model_dump(),
                     reference={"source": "published SID tables in ../shared/data (3 levels + collision code)",
                                "tables": reference} if reference else None,
                     extra={"items": report["items"], "warnings": report["warnings"],
                            "targets": {"rq-kmeans fit_seconds": 15, "rq-vae fit_seconds": 300}})


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--methods", default="rq-kmeans,rq-vae")
    args = parser.parse_args()
    for dataset in args.datasets.split(","):
        for method in args.methods.split(","):
            bench(dataset, method)
