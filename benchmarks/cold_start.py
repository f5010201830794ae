"""Cold start: how well new items are recommended once onboarded into a trained multimodal generative run.

    python benchmarks/cold_start.py --dataset synthetic
    python benchmarks/cold_start.py --dataset ml-100k

Protocol. The dataset is read once (`configs/<dataset>.yaml`). Every item's first-interaction time is the earliest
timestamp of any event on it; the `--holdout` share of items (default 5%, at least one) whose first interaction
comes last are held out (ties broken by a permutation seeded with `--seed`). The held-out items are removed from
training ENTIRELY: from the catalog (so from feature encoding, the tokenizer fit, the codes and the vocabulary's
item table) and from the interaction data, where each of their events is deleted from the user's sequence (the
user's other events keep their order; a user left with no event is dropped). The counts of dropped events and
users are reported. Two runs are trained on the reduced data, with the same seed and `split.max_history`:

- generative: `--recipe` (default configs/mgr-lf.yaml: late fusion of text and image semantic IDs) with the
  CPU-sized T5 and RQ-k-means codes of `benchmarks/t5_rows.py` (`SHARED`, its codebook size per dataset) and a
  budget of `--steps` next-item steps (early stopping on validation NDCG@10 with `--patience`);
- ID baseline: SASRec (configs/sasrec.yaml), `--sasrec-epochs` epochs, same patience.

The defaults are sized for about 10 minutes of 2 CPU cores on ml-100k (an estimate: the MGR-LF row at that size
trained at about 0.8 s per step there; SASRec, onboarding and ranking take a minute or two), about 3 on synthetic.

Then every held-out item is onboarded into the generative run, oldest first, through `mmgr.load(run).onboard`
(the code path of the server's `POST /items`: the run's own encoders and fitted tokenizers) with its title,
description, brand, categories and image (an item without an image is onboarded with its text only).

Evaluation events are the test events of the FULL data's leave-one-out split (`mmgr.data.splits`: per user with at
least 3 events, the last event is the target and the `--history` events before it are the history). Held-out
targets are the events whose target is a held-out item; warm targets are the rest; all targets are both. Each
method ranks the whole catalog, held-out items included, and returns its top 10 with the history's items excluded:

- generative: the served recommend path (`serving.service.Recommender.recommend`, what `POST /recommend` calls,
  `exclude_seen` on) on the run with the items onboarded;
- content: every catalog item scored by the cosine similarity of its features to the mean of the history items'
  unit-length features, per modality (the run's text and image features: `features/<modality>.safetensors` for
  the trained items, the same encoders on the held-out items), averaged over the modalities an item has;
- sasrec: the served recommend path on the SASRec run. It has no embedding for a held-out item, so it can never
  rank one; held-out items in a history are left out of its request (a history left empty is a miss).

A history item that a method's catalog lacks is left out of that method's request; how often is reported.
Metrics are HR@10, NDCG@10 and MRR@10 (`mmgr.evaluation.metrics`); `coverage` says how much of each method's lists
the held-out items fill (a method that never ranks them cannot hit them). Everything is deterministic given `--seed`
(up to the floating-point nondeterminism of training on the machine's threads).

Runs live in runs/cold-start-<dataset>/ (rebuilt on every invocation; `--work` moves it). Writes
<--out, default benchmarks/results>/cold-start-<dataset name>-summary.json.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import t5_rows  # noqa: E402

from mmgr.config import Config, load_config  # noqa: E402
from mmgr.data.dataset import Dataset  # noqa: E402
from mmgr.data.splits import leave_one_out  # noqa: E402
from mmgr.errors import MmgrError  # noqa: E402
from mmgr.evaluation.metrics import per_user, summarize  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATASETS = {name: t5_rows.DATASETS[name] for name in ("synthetic", "ml-100k")}
RECIPES = {"mgr-lf": "configs/mgr-lf.yaml", "mgr-lfpp": "configs/mgr-lfpp.yaml"}
MODALITIES = ("text", "image")
K = 10
MARKER = "cold-start.json"          # marks a work folder this script made (and may rebuild)
REQUESTS_PER_CALL = 128


# --- pure logic: hold-out selection, dropping events, content scores, metrics


@dataclass(frozen=True)
class Reduced:
    """The interaction data without the held-out items (item indices renumbered over `kept_items`)."""

    kept_items: np.ndarray           # old item indices kept, ascending (new index = position here)
    users: np.ndarray                # old user rows that keep at least one event
    keep: list[np.ndarray]           # per kept user: bool mask over their old events (True = kept)
    sequences: list[np.ndarray]      # per kept user: the kept events' new item indices, in order
    dropped_events: int
    dropped_users: int               # users whose every event was on a held-out item


def first_interaction_times(sequences: list[np.ndarray], timestamps: list[np.ndarray], num_items: int) -> np.ndarray:
    """int64[num_items]: each item's earliest event timestamp (int64 max for an item nobody interacted with)."""
    first = np.full(num_items, np.iinfo(np.int64).max, dtype=np.int64)
    for items, times in zip(sequences, timestamps, strict=True):
        np.minimum.at(first, np.asarray(items, dtype=np.int64), np.asarray(times, dtype=np.int64))
    return first


def held_out_items(first_times: np.ndarray, share: float, seed: int) -> np.ndarray:
    """The round(share x items) items (at least 1) whose first interaction is latest, oldest first; ties are
    broken by a permutation seeded with `seed`."""
    if not 0 < share < 1:
        raise ValueError(f"the held-out share must be between 0 and 1, got {share}")
    count = max(1, int(round(share * first_times.size)))
    tiebreak = np.random.default_rng(seed).permutation(first_times.size)
    latest_first = np.lexsort((tiebreak, -first_times))[:count]
    return latest_first[::-1].copy()


def drop_items(sequences: list[np.ndarray], held: np.ndarray, num_items: int) -> Reduced:
    """Delete every event on a `held` item from the sequences, renumber the remaining items, drop empty users."""
    is_held = np.zeros(num_items, dtype=bool)
    is_held[np.asarray(held, dtype=np.int64)] = True
    kept_items = np.flatnonzero(~is_held)
    renumber = np.full(num_items, -1, dtype=np.int64)
    renumber[kept_items] = np.arange(kept_items.size)
    users, keep, reduced, dropped = [], [], [], 0
    for user, items in enumerate(sequences):
        mask = ~is_held[np.asarray(items, dtype=np.int64)]
        dropped += int((~mask).sum())
        if mask.any():
            users.append(user)
            keep.append(mask)
            reduced.append(renumber[np.asarray(items, dtype=np.int64)[mask]].astype(np.int32))
    return Reduced(kept_items, np.asarray(users, dtype=np.int64), keep, reduced, dropped, len(sequences) - len(users))


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors, dtype=np.float64), where=norms > 0)


def content_scores(features: dict[str, tuple[np.ndarray, np.ndarray]], history: np.ndarray) -> np.ndarray:
    """float[N]: per modality (vectors float[N, D], missing bool[N]), the cosine similarity of each item to the mean
    of the history items' unit vectors, averaged over the modalities the item has (and some history item has);
    history items and items with no usable modality score -inf."""
    history = np.asarray(history, dtype=np.int64)
    total, count = None, None
    for vectors, missing in features.values():
        if total is None:
            total, count = np.zeros(len(vectors)), np.zeros(len(vectors))
        unit = unit_rows(np.asarray(vectors, dtype=np.float64))
        known = history[~missing[history]]
        query = unit[known].mean(axis=0) if known.size else None
        if query is None or not np.linalg.norm(query) > 0:
            continue
        similarity = unit @ (query / np.linalg.norm(query))
        total += np.where(missing, 0.0, similarity)
        count += ~missing
    scores = np.where(count > 0, total / np.maximum(count, 1), -np.inf)
    scores[history] = -np.inf
    return scores


def top_items(scores: np.ndarray, k: int) -> np.ndarray:
    """int64[k]: the k best items (lower index first among equal scores), -1 where fewer than k score > -inf."""
    order = np.argsort(-scores, kind="stable")[:k]
    ranked = np.full(k, -1, dtype=np.int64)
    finite = order[np.isfinite(scores[order])]
    ranked[:finite.size] = finite
    return ranked


def subset_metrics(ranked: np.ndarray, targets: np.ndarray, subsets: dict[str, np.ndarray]) -> dict[str, Any]:
    """HR / NDCG / MRR @K (means) and the event count of each subset (bool masks over the events)."""
    values = per_user(ranked, targets, (K,))
    out: dict[str, Any] = {}
    for name, mask in subsets.items():
        picked = {key: value[mask] for key, value in values.items() if not key.startswith("recall")}
        out[name] = {**(summarize(picked) if mask.any() else {key: None for key in picked}), "events": int(mask.sum())}
    return out


def coverage(ranked: np.ndarray, held: np.ndarray) -> dict[str, Any]:
    """How much of the top-K lists the held-out items fill, and how many lists came back short of K items."""
    is_held = np.isin(ranked, held)
    return {"held_out_share_of_slots": float(is_held.sum() / max(1, (ranked >= 0).sum())),
            "lists_with_a_held_out_item": int(is_held.any(axis=1).sum()),
            "short_lists": int((ranked < 0).any(axis=1).sum())}


# --- data and runs


def full_dataset(dataset: str, work: Path) -> Dataset:
    """The dataset recipe's data, read once (the synthetic world is generated into work/source)."""
    from mmgr.data.importer import read_dataset

    return read_dataset(load_config([ROOT / DATASETS[dataset][1]]).data, work / "source")


def timestamps_of(data: Dataset) -> list[np.ndarray]:
    stamps = data.sequences["timestamps"].to_pylist()
    if any(times is None for times in stamps):
        raise MmgrError(f"{data.name}: some sequences have no timestamps; first-interaction times need them")
    return [np.asarray(times, dtype=np.int64) for times in stamps]


def reduced_dataset(data: Dataset, reduced: Reduced, held_ids: list[str]) -> Dataset:
    """`data` without the held-out items: catalog rows taken, sequences (and timestamps) filtered."""
    sequences = data.sequences.take(pa.array(reduced.users))
    stamps = [np.asarray(times, dtype=np.int64)[mask].tolist()
              for times, mask in zip(sequences["timestamps"].to_pylist(), reduced.keep, strict=True)]
    table = pa.table({"user_id": sequences["user_id"], "items": [s.tolist() for s in reduced.sequences],
                      "timestamps": stamps, "source_index": sequences["source_index"]})
    problems = {**data.problems, "cold_start_held_out": {
        "count": len(held_ids), "examples": held_ids[:5], "events_dropped": reduced.dropped_events,
        "users_dropped": reduced.dropped_users}}
    return Dataset(data.name, data.items.take(pa.array(reduced.kept_items)), table, problems)


def generative_config(args: argparse.Namespace) -> Config:
    budget = [f"seed={args.seed}", f"split.max_history={args.history}", f"training.max_steps={args.steps}",
              f"training.epochs={args.epochs}", f"training.patience={args.patience}",
              f"tokenizer.codebook_size={t5_rows.CODEBOOK[args.dataset]}"]
    return load_config([ROOT / DATASETS[args.dataset][1], ROOT / RECIPES[args.recipe]],
                       [*t5_rows.SHARED, *budget, *args.overrides])


def sasrec_config(args: argparse.Namespace) -> Config:
    budget = [f"seed={args.seed}", f"split.max_history={args.history}", f"training.epochs={args.sasrec_epochs}",
              f"training.patience={args.patience}", "training.batch_size=128", "decoding.top_k=20"]
    return load_config([ROOT / DATASETS[args.dataset][1], ROOT / "configs" / "sasrec.yaml"], budget)


def trained_run(folder: Path, config: Config, data: Dataset) -> tuple[Path, dict[str, Any]]:
    """Import `data` into run `folder`, then run every stage of `config` (`mmgr run`'s runner)."""
    from mmgr.data.importer import import_into_run
    from mmgr.pipeline import run_recipe

    import_into_run(config, folder, data)
    done = run_recipe(config, folder, progress=False, say=lambda text: print(f"  {folder.name}: {text}", flush=True))
    train = done["train"]
    return folder, {key: train.get(key) for key in ("steps", "epochs_run", "best_epoch", "train_seconds",
                                                    "wall_seconds", "parameters", "train_examples",
                                                    "train_sequences")}


def check_excluded(run: Path, held_ids: list[str]) -> dict[str, int]:
    """Refuse a run whose catalog (what its features, codes and vocabulary were made from) has a held-out item."""
    import pyarrow.parquet as pq

    items = set(pq.read_table(run / "items.parquet", columns=["item_id"])["item_id"].to_pylist())
    leaked = items & set(held_ids)
    if leaked:
        raise MmgrError(f"{run}: held-out items in the training catalog: {sorted(leaked)[:5]}")
    return {"catalog_items": len(items)}


# --- onboarding and ranking


def onboard_all(run: Path, data: Dataset, held: np.ndarray) -> tuple[Any, dict[str, Any]]:
    """Onboard every held-out item through `Recommender.onboard` of `mmgr.load(run)` (built here as `mmgr.load`
    builds it, keeping the service the server's `POST /items` and `POST /recommend` call); returns the service (to
    rank with) and what happened."""
    from mmgr.api import Recommender
    from mmgr.serving.bundle import load_recommender

    service = load_recommender(run, onboarding=True)
    recommender = Recommender(service)
    rows = data.items.take(pa.array(held)).to_pylist()
    failed: dict[str, str] = {}
    started = time.perf_counter()
    for row in rows:
        try:
            recommender.onboard(row["item_id"], row["title"], row["description"] or "", row["brand"] or "",
                                row["categories"] or [], image=row["image"])
        except MmgrError as exc:
            failed[row["item_id"]] = str(exc)
    seconds = time.perf_counter() - started
    report = {"items": len(rows), "onboarded": len(rows) - len(failed),
              "with_image": sum(bool(r["image"]) for r in rows), "failed": failed, "seconds": round(seconds, 3)}
    return service, report


def served_ranked(service: Any, item_ids: list[str], histories: list[np.ndarray]) -> tuple[np.ndarray, dict[str, int]]:
    """int64[E, K] full-catalog indices ranked by the served recommend path (`exclude_seen` on); history items the
    service does not know are left out of the request."""
    from mmgr.serving.service import Request

    index = {item: row for row, item in enumerate(item_ids)}
    ranked = np.full((len(histories), K), -1, dtype=np.int64)
    requests, shortened = [], 0
    for history in histories:
        known = [item_ids[i] for i in history.tolist() if item_ids[i] in service.index]
        shortened += len(known) < len(history)
        requests.append(Request(history=known, k=K))
    refused = 0
    for start in range(0, len(requests), REQUESTS_PER_CALL):
        for row, answer in enumerate(service.recommend(requests[start:start + REQUESTS_PER_CALL]), start):
            if isinstance(answer, Exception):
                refused += 1
                continue
            items = [index[entry["item_id"]] for entry in answer]
            ranked[row, :len(items)] = items
    return ranked, {"histories_shortened": shortened, "requests_refused": refused}


def catalog_features(run: Path, data: Dataset, reduced: Reduced, held: np.ndarray,
                     config: Config) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per modality, (vectors, missing) over the full catalog: the run's stored features for the trained items, the
    run's encoders (through the content cache) for the held-out ones."""
    from mmgr.encoders.base import encode_items
    from mmgr.encoders.cache import VectorCache, default_cache_dir
    from mmgr.encoders.features import load_features
    from mmgr.encoders.stage import item_encoder

    cache = Path(config.encoders.cache_dir) if config.encoders.cache_dir else default_cache_dir()
    rows = data.items.take(pa.array(held))
    out = {}
    for modality in MODALITIES:
        stored = load_features(run, modality)
        new = encode_items(item_encoder(modality, config.encoders, rows), rows,
                           VectorCache(cache / "vectors" / modality), progress=False)
        vectors = np.zeros((data.num_items, stored.vectors.shape[1]), dtype=np.float32)
        missing = np.ones(data.num_items, dtype=bool)
        vectors[reduced.kept_items], missing[reduced.kept_items] = stored.vectors, stored.missing
        vectors[held], missing[held] = new.vectors, new.missing
        out[modality] = (vectors, missing)
    return out


def content_ranked(features: dict[str, tuple[np.ndarray, np.ndarray]], histories: list[np.ndarray]) -> np.ndarray:
    return np.stack([top_items(content_scores(features, history), K) for history in histories])


# --- the benchmark


def work_folder(args: argparse.Namespace) -> Path:
    """The (emptied) work folder; one this script did not make is refused rather than deleted."""
    work = Path(args.work) if args.work else ROOT / "runs" / f"cold-start-{args.dataset}"
    if work.exists():
        if not (work / MARKER).is_file():
            raise MmgrError(f"{work} exists and was not made by this script; choose another --work")
        shutil.rmtree(work)
    work.mkdir(parents=True)
    (work / MARKER).write_text('{"made_by": "benchmarks/cold_start.py"}\n')
    return work


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="synthetic")
    parser.add_argument("--holdout", type=float, default=0.05, help="share of items held out (latest first seen)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--recipe", choices=sorted(RECIPES), default="mgr-lf", help="the generative recipe")
    parser.add_argument("--steps", type=int, default=500, help="generative next-item training steps (budget)")
    parser.add_argument("--epochs", type=int, default=30, help="generative epochs at most")
    parser.add_argument("--sasrec-epochs", type=int, default=100)
    parser.add_argument("--patience", type=int, default=10, help="early stopping: validations without improvement")
    parser.add_argument("--history", type=int, default=20, help="split.max_history of both runs and the events")
    parser.add_argument("--work", help="work folder (default runs/cold-start-<dataset>; rebuilt)")
    parser.add_argument("--out", type=Path, default=common.RESULTS, help="results folder")
    parser.add_argument("overrides", nargs="*", help="extra key=value settings of the generative run")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    work = work_folder(args)
    data = full_dataset(args.dataset, work)
    sequences = data.item_sequences()
    held = held_out_items(first_interaction_times(sequences, timestamps_of(data), data.num_items),
                          args.holdout, args.seed)
    item_ids = data.items["item_id"].to_pylist()
    held_ids = [item_ids[i] for i in held.tolist()]
    reduced = drop_items(sequences, held, data.num_items)
    training_data = reduced_dataset(data, reduced, held_ids)
    print(f"{data.name}: {len(held)} of {data.num_items} items held out, {reduced.dropped_events} events and "
          f"{reduced.dropped_users} users dropped from training", flush=True)

    gen_config, sas_config = generative_config(args), sasrec_config(args)
    gen_run, gen_train = trained_run(work / "generative", gen_config, training_data)
    sas_run, sas_train = trained_run(work / "sasrec", sas_config, training_data)
    excluded = {"generative": check_excluded(gen_run, held_ids), "sasrec": check_excluded(sas_run, held_ids)}

    test = leave_one_out(sequences, args.history).test
    is_held = np.isin(test.targets, held)
    subsets = {"held_out_targets": is_held, "warm_targets": ~is_held, "all_targets": np.ones_like(is_held)}
    service, onboarding = onboard_all(gen_run, data, held)
    print(f"onboarded {onboarding['onboarded']} of {onboarding['items']} held-out items", flush=True)

    from mmgr.serving.bundle import load_recommender

    gen_ranked, gen_requests = served_ranked(service, item_ids, test.histories)
    sas_ranked, sas_requests = served_ranked(load_recommender(sas_run, onboarding=False), item_ids, test.histories)
    content = content_ranked(catalog_features(gen_run, data, reduced, held, gen_config), test.histories)
    methods = {f"generative-{args.recipe}": gen_ranked, "content-similarity": content, "sasrec": sas_ranked}
    metrics = {name: subset_metrics(ranked, test.targets, subsets) for name, ranked in methods.items()}
    for name, values in metrics.items():
        print(f"{name:>24}: held-out HR@{K} {values['held_out_targets'][f'hr@{K}']}, all HR@{K} "
              f"{values['all_targets'][f'hr@{K}']}", flush=True)

    name = DATASETS[args.dataset][0]
    counts = {"catalog_items": data.num_items, "held_out_items": len(held),
              "training_items": int(reduced.kept_items.size), "users": data.num_users,
              "training_users": int(reduced.users.size), "events": data.num_interactions,
              "events_dropped": reduced.dropped_events, "users_dropped": reduced.dropped_users,
              "test_events": len(test), "held_out_test_events": int(is_held.sum()), "trained_catalogs": excluded}
    common.write_result(
        "cold-start", name, "summary", metrics, split="test", wall_seconds=time.perf_counter() - started,
        config={"holdout_share": args.holdout, "seed": args.seed, "history": args.history, "k": K,
                "recipe": RECIPES[args.recipe], "generative": gen_config.model_dump(mode="json"),
                "sasrec": sas_config.model_dump(mode="json")},
        extra={"counts": counts, "held_out_items": held_ids, "onboarding": onboarding,
               "requests": {"generative": gen_requests, "sasrec": sas_requests},
               "coverage": {name: coverage(ranked, held) for name, ranked in methods.items()},
               "train": {"generative": gen_train, "sasrec": sas_train},
               "protocol": {"held_out": "items whose first interaction is latest; their events deleted from the "
                                        "training sequences, the items from the training catalog",
                            "events": "the full data's leave-one-out test events (last event of each user with 3+)",
                            "ranking": "whole catalog incl. onboarded items, top 10, history items excluded",
                            "generative": "served recommend path after onboarding via mmgr.load(run).onboard",
                            "content": "mean over text/image of cosine(item, mean of history features)",
                            "sasrec": "served recommend path; cannot rank items it was not trained on"}},
        directory=args.out)


if __name__ == "__main__":
    main()
