"""How serving scales with the catalog: trie build, request latency and onboarding for synthetic catalogs of 10k,
100k and 1M items, through the production serving stack.

    python benchmarks/catalog_scale.py [--sizes 10000,100000,1000000] [--out benchmarks/results] [--requests 400]
        [--clients 8] [--onboard 10] [--skew 0.8] [--threads N] [--seed 0]

Catalog: 4-level semantic IDs, 3 levels of 256 codes and TIGER's collision level (`sampled_codes`,
`catalog_codes`). Each level's code is a Zipf(`--skew`) popularity rank over the 256 codes, rotated by a hash of the
item's prefix, so every parent has its own popular children (clustered, as residual quantisers' codes are); items
sharing all 3 codes are numbered by the project's `append` rule (`tokenizers.collisions.append_level`). With
`--skew 0.8`, 10k items collide about as often as Amazon Beauty's RQ-VAE codes (4.4% vs 5.0% of 12k items); the rate
and the largest group grow with the catalog (1M items: 46%, a group of 820). Titles are short synthetic strings;
1,000 users with 5-30 random items each.

Model: the `tiger-item-causal` recipe (item-level causal backbone, d_model 128, 4 layers, beam 20, top-k 20, 2,000
user buckets), built by `inference.generative.build_model` for the catalog's vocabulary with seeded random
weights: serving cost does not depend on training, so no model is trained. Everything after the codes is
production code: the vocabulary, layout and `PrefixTrie` (`inference.prepared.compose`), `GenerativeRanker`, the
causal trie beam search, the `Recommender`, the server's `MicroBatcher` (max_batch 32, max_wait_ms 5: `mmgr serve`'s
defaults) and `Recommender.onboard` with its `Onboarder`: the recipe's MiniLM text encoder, an RQ-k-means 3 x 256
tokenizer (fitted on 4,096 seeded random 384-d vectors: its codes for new items are real tokenizer output, the
catalog's are sampled), the SQLite onboarding store in a scratch run folder.

Per size:
(a) trie build: wall time of `compose` (layout tokens + `PrefixTrie.build`, what a server does when it loads a
    run), the trie's tensor bytes (`PrefixTrie.nbytes`, spare capacity included) and the process's peak RSS delta
    over the build (VmHWM after minus VmRSS before; free heap is first given back with malloc_trim and VmHWM reset
    through /proc/self/clear_refs; small builds can still reuse freed heap and count less).
(b) requests: `--clients` client threads in this process (no HTTP or JSON: the catalog's cost, not the web
    stack's) send `--requests` requests, {history: 1-20 random item ids, k: 10}, seeded, back to back through the
    `MicroBatcher` into `Recommender.recommend`, after 16 warm-up requests. Latency is measured by the client; the
    clients' share of the process's CPU time is reported (`client_cpu_share`).
(c) onboarding: one warm-up item (it loads the encoder), then `--onboard` new items through `Recommender.onboard`
    (encode, tokenize, collision rule, ranker extended, store commit, catalog index), each timed end to end. Then,
    for one more item, `Onboarder.extend` (the codes) and `GenerativeRanker.extended` (layout and trie) are timed
    alone (`probe_*`; that item is not kept).

Targets (`targets`: the smallest and largest sizes stand for 10k and 1M): p50 and p99 latency at 1M within 2x of
10k; trie build of 1M <= 60 s and <= 2 GB peak RSS delta; median onboarding into 1M <= 100 ms. Writes
<out>/catalog-scale-synthetic-serving.json. Run it on otherwise idle cores: every number is a wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import gc
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from pathlib import Path
from queue import Queue
from typing import Any

import common  # first: sets OMP_WAIT_POLICY before torch starts its thread pool
import numpy as np
import pyarrow as pa
import torch

from mmgr.api import config_of
from mmgr.backbones import BACKBONES
from mmgr.config import Config
from mmgr.data.dataset import Dataset
from mmgr.data.splits import leave_one_out
from mmgr.engines.method import build_vocabulary
from mmgr.inference.generative import GenerativeRanker, build_model
from mmgr.inference.prepared import LayoutRecipe, Prepared, compose
from mmgr.rundir import RunDir
from mmgr.serving.batcher import BatchSettings, MicroBatcher
from mmgr.serving.onboarding import NewItem, Onboarder
from mmgr.serving.service import Limits, Recommender, Request
from mmgr.tokenizers.codes import ModalityCodes
from mmgr.tokenizers.collisions import append_level
from mmgr.tokenizers.rq_kmeans import RQKMeans

ROOT = Path(__file__).resolve().parents[1]
RECIPES = [ROOT / "configs" / "synthetic.yaml", ROOT / "configs" / "tiger-item-causal.yaml"]
LEVELS, CODEBOOK = 3, 256
USERS, WARMUP, HISTORY = 1000, 16, (1, 20)
MAX_GB, MAX_BUILD_S, MAX_ONBOARD_MS, MAX_LATENCY_RATIO = 2.0, 60.0, 100.0, 2.0
TARGETS = {"latency": f"p50 and p99 latency at 1M items <= {MAX_LATENCY_RATIO:g}x those at 10k",
           "build_time": f"trie build of 1M items <= {MAX_BUILD_S:g} s",
           "build_memory": f"trie build of 1M items <= {MAX_GB:g} GB (peak RSS delta)",
           "onboarding": f"onboarding one item into the 1M catalog <= {MAX_ONBOARD_MS:g} ms (median)"}
WORDS = ("red", "linen", "travel", "organic", "mini", "classic", "steel", "pack", "soft", "gift", "matte", "rose")


# ---- the synthetic catalog --------------------------------------------------------------------------------------

def sampled_codes(n: int, skew: float, seed: int, levels: int = LEVELS, codebook: int = CODEBOOK) -> np.ndarray:
    """(n, levels) codes: each level's code is a Zipf(`skew`) popularity rank over `codebook` codes, rotated by a
    hash of the item's prefix (each parent has its own popular children). May repeat tuples."""
    rng = np.random.default_rng(seed)
    weights = np.arange(1, codebook + 1, dtype=np.float64) ** -skew
    codes = np.empty((n, levels), dtype=np.int64)
    key = np.zeros(n, dtype=np.uint64)
    for level in range(levels):
        rank = rng.choice(codebook, size=n, p=weights / weights.sum())
        shift = ((key * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(40)) % np.uint64(codebook)
        codes[:, level] = (rank + shift.astype(np.int64)) % codebook
        key = key * np.uint64(codebook) + codes[:, level].astype(np.uint64)
    return codes


def catalog_codes(n: int, skew: float, seed: int) -> ModalityCodes:
    """The catalog's text codes: `sampled_codes` plus the collision level of the `append` rule (unique tuples)."""
    codes, extra = append_level(sampled_codes(n, skew, seed), capacity=CODEBOOK)
    return ModalityCodes("text", codes, [CODEBOOK] * LEVELS + [extra], np.zeros(n, dtype=bool),
                         {"tokenizer": "rq-kmeans", "collisions": "append", "source": "sampled (catalog_scale.py)"})


def code_stats(codes: ModalityCodes) -> dict[str, Any]:
    """Collision statistics of the sampled codes (before the collision level)."""
    _, counts = np.unique(codes.codes[:, :-1], axis=0, return_counts=True)
    return {"distinct_semantic_ids": len(counts), "collision_rate": round(float(counts[counts > 1].sum()) /
                                                                           len(codes.codes), 4),
            "largest_collision_group": int(counts.max()), "collision_level_size": codes.sizes[-1]}


def catalog_items(n: int) -> pa.Table:
    """Catalog rows (the dataset's item schema): ids, short titles, a brand; no images."""
    titles = [f"{WORDS[i % len(WORDS)]} {WORDS[(i // 7) % len(WORDS)]} item {i}" for i in range(n)]
    empty = pa.nulls(n, pa.string())
    return pa.table({"item_id": [f"c{i:07d}" for i in range(n)], "title": titles,
                     "description": pa.array([""] * n), "brand": pa.array(["acme"] * n),
                     "categories": pa.array([[]] * n, pa.list_(pa.string())), "image": empty,
                     "has_text": pa.array(np.ones(n, dtype=bool)), "has_image": pa.array(np.zeros(n, dtype=bool)),
                     "source_index": empty})


def user_sequences(n_items: int, users: int, rng: np.random.Generator) -> pa.Table:
    lengths = rng.integers(5, 31, size=users)
    items = [rng.integers(0, n_items, size=int(k)).tolist() for k in lengths]
    return pa.table({"user_id": [f"u{u:05d}" for u in range(users)], "items": pa.array(items, pa.list_(pa.int32())),
                     "timestamps": pa.array([list(range(len(s))) for s in items], pa.list_(pa.int64())),
                     "source_index": pa.nulls(users, pa.string())})


# ---- the serving stack --------------------------------------------------------------------------------------------

def recipe(seed: int) -> Config:
    return config_of([str(p) for p in RECIPES], {"seed": seed, "tokenizer__method": "rq-kmeans"})


def peak_rss_reset() -> bool:
    """Give freed heap back to the system (so a build does not count as reusing it) and reset the process's peak
    RSS (VmHWM); False where the kernel does not allow it."""
    gc.collect()
    with suppress(OSError, AttributeError):                   # not glibc
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def build_stack(config: Config, codes: ModalityCodes, dataset: Dataset) -> tuple[Prepared, dict[str, Any]]:
    """The ranker's `Prepared` data, with the trie build measured."""
    vocab = build_vocabulary({"text": codes}, config)
    reset = peak_rss_reset()
    before = rss_kb("VmRSS")
    started = time.perf_counter()
    recipe = LayoutRecipe.of(config)
    layout, tries = compose({"text": codes}, vocab, recipe)
    seconds = time.perf_counter() - started
    peak = rss_kb("VmHWM") - before
    trie = tries["item"]
    split = leave_one_out(dataset.item_sequences(), config.split.max_history)
    prep = Prepared(dataset, dataset.sequences["user_id"].to_pylist(), split, {"text": codes}, layout, tries, {},
                    recipe=recipe)
    return prep, {"build_seconds": round(seconds, 3), "trie_bytes": trie.nbytes, "trie_nodes": trie.num_nodes,
                  "build_peak_rss_delta_bytes": peak * 1024 if reset else None, "vocab_size": vocab.size}


def fitted_tokenizer(run: RunDir, seed: int) -> None:
    """An RQ-k-means 3 x 256 tokenizer over MiniLM's 384 dimensions, fitted on seeded random vectors, saved where
    the Onboarder loads it."""
    vectors = np.random.default_rng(seed).standard_normal((4096, 384)).astype(np.float32)
    RQKMeans(LEVELS, CODEBOOK, n_iter=4, seed=seed).fit(vectors).save(run.path / "tokenizers" / "text")


def recommender(config: Config, prep: Prepared, run: RunDir) -> Recommender:
    model = build_model(config, prep).eval()
    ranker = GenerativeRanker(prep, model, BACKBONES.get(config.model.kind), config.decoding)
    return Recommender(ranker, Limits(), Onboarder(run, config))


# ---- (b) requests -------------------------------------------------------------------------------------------------

def requests_for(item_ids: list[str], n: int, rng: np.random.Generator) -> list[Request]:
    return [Request(history=[item_ids[i] for i in rng.choice(len(item_ids), int(rng.integers(HISTORY[0],
                                                                                                HISTORY[1] + 1)),
                                                              replace=False)], k=10) for _ in range(n)]


def load(recommender: Recommender, requests: list[Request], clients: int) -> dict[str, Any]:
    """`clients` threads send `requests` back to back through the server's MicroBatcher (run in its own event
    loop thread, as `mmgr serve` runs it)."""
    sizes: list[int] = []
    batcher = MicroBatcher(recommender.recommend, BatchSettings(), sizes.append)
    with event_loop() as loop:
        answered, client_cpu, cpu, wall = send(lambda request: asyncio.run_coroutine_threadsafe(
            batcher.submit(request), loop).result(), requests, clients)
    errors = sum(not isinstance(answer, list) or len(answer) != request.k for request, answer, _ in answered)
    ms = np.array([seconds for _, _, seconds in answered]) * 1000
    return {"requests": len(ms), "errors": errors, "seconds": round(wall, 3),
            "requests_per_second": round(len(ms) / wall, 2),
            "p50_ms": round(float(np.percentile(ms, 50)), 2), "p95_ms": round(float(np.percentile(ms, 95)), 2),
            "p99_ms": round(float(np.percentile(ms, 99)), 2),
            "mean_batch_size": round(float(np.mean(sizes)), 2) if sizes else None,
            "client_cpu_share": round(client_cpu / cpu, 4) if cpu > 0 else None}


@contextmanager
def event_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop running in its own thread for the block; its pending tasks are cancelled at the end."""
    ready: Queue = Queue()

    async def serve() -> None:
        stop = asyncio.Event()
        ready.put((asyncio.get_running_loop(), stop))
        await stop.wait()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    loop, stop = ready.get()
    try:
        yield loop
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join()


def send(call: Callable[[Request], Any], requests: list[Request], clients: int
         ) -> tuple[list[tuple[Request, Any, float]], float, float, float]:
    """Each of `clients` threads takes the next request and waits for its answer, until none is left. Returns
    (request, answer, latency) per request, the clients' CPU seconds, the process's CPU seconds and the wall
    time."""
    tickets, lock = iter(range(len(requests))), threading.Lock()
    answered: list[tuple[Request, Any, float]] = []

    def client() -> float:
        cpu = time.thread_time()
        while (index := next_ticket()) is not None:
            started = time.perf_counter()
            answer = call(requests[index])
            with lock:
                answered.append((requests[index], answer, time.perf_counter() - started))
        return time.thread_time() - cpu

    def next_ticket() -> int | None:
        with lock:
            return next(tickets, None)

    cpu, started = time.process_time(), time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        client_cpu = sum(pool.map(lambda _: client(), range(clients)))
    return answered, client_cpu, time.process_time() - cpu, time.perf_counter() - started


# ---- (c) onboarding -----------------------------------------------------------------------------------------------

def new_item(index: int) -> NewItem:
    words = [WORDS[(index * 5 + j) % len(WORDS)] for j in range(4)]
    return NewItem(f"new-{index:04d}", f"{' '.join(words)} new arrival {index}", f"a {words[0]} {words[1]} thing",
                   "acme", ["synthetic"])


def onboarding(recommender: Recommender, count: int) -> dict[str, Any]:
    """Onboard one warm-up item, then `count` timed ones; then time the codes and the ranker of one more alone."""
    recommender.onboard(new_item(0))
    times, collided = [], 0
    for index in range(1, count + 1):
        started = time.perf_counter()
        added = recommender.onboard(new_item(index))
        times.append(time.perf_counter() - started)
        collided += added["codes"]["text"][-1] > 0
    probe, ranker = new_item(count + 1), recommender.ranker
    onboarder = recommender.onboarder
    started = time.perf_counter()
    codes = onboarder.extend(ranker.data.codes, probe)
    codes_s = time.perf_counter() - started
    started = time.perf_counter()
    ranker.extended(codes, probe.table(onboarder.run))
    ranker_s = time.perf_counter() - started
    ms = np.array(times) * 1000
    return {"onboarded": count, "onboard_median_ms": round(float(np.median(ms)), 2),
            "onboard_max_ms": round(float(ms.max()), 2), "onboard_into_existing_semantic_id": int(collided),
            "probe_codes_ms": round(codes_s * 1000, 2), "probe_ranker_extended_ms": round(ranker_s * 1000, 2)}


# ---- one size, targets, main ----------------------------------------------------------------------------------------

def measure_size(n: int, args: argparse.Namespace, config: Config, scratch: Path) -> dict[str, Any]:
    wall = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    codes = catalog_codes(n, args.skew, args.seed)
    dataset = Dataset("synthetic-catalog", catalog_items(n), user_sequences(n, USERS, rng))
    prep, build = build_stack(config, codes, dataset)
    run = RunDir(scratch / f"run-{n}")
    fitted_tokenizer(run, args.seed)
    served = recommender(config, prep, run)
    item_ids = served.item_ids
    load(served, requests_for(item_ids, WARMUP, rng), args.clients)
    latency = load(served, requests_for(item_ids, args.requests, rng), args.clients)
    onboard = onboarding(served, args.onboard)
    row = {"items": n, **code_stats(codes), **build, **latency, **onboard,
           "peak_rss_bytes": rss_kb("VmHWM") * 1024, "seconds": round(time.perf_counter() - wall, 1)}
    print(" ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    return row


def targets(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Each target with what was measured, at which sizes, and whether it is met (the smallest and the largest
    catalog measured stand for 10k and 1M)."""
    small, large = rows[0], rows[-1]
    ratio = {q: large[f"{q}_ms"] / small[f"{q}_ms"] for q in ("p50", "p99")}
    peak = large["build_peak_rss_delta_bytes"]
    return {
        "latency_within_2x": {"target": TARGETS["latency"], "items": [small["items"], large["items"]],
                              "p50_ratio": round(ratio["p50"], 3), "p99_ratio": round(ratio["p99"], 3),
                              "met": max(ratio.values()) <= MAX_LATENCY_RATIO},
        "trie_build_time": {"target": TARGETS["build_time"], "items": large["items"],
                            "seconds": large["build_seconds"], "met": large["build_seconds"] <= MAX_BUILD_S},
        "trie_build_memory": {"target": TARGETS["build_memory"], "items": large["items"], "bytes": peak,
                              "met": peak is not None and peak <= MAX_GB * 1e9},
        "onboarding": {"target": TARGETS["onboarding"], "items": large["items"], "ms": large["onboard_median_ms"],
                       "met": large["onboard_median_ms"] <= MAX_ONBOARD_MS},
    }


def catalog_sizes(text: str) -> list[int]:
    """--sizes: comma-separated item counts, at least 1,000 each (the tokenizer and 1,000 users need them)."""
    try:
        sizes = sorted({int(part) for part in text.split(",")})
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated item counts, got {text!r}") from None
    if sizes[0] < 1000:
        raise argparse.ArgumentTypeError(f"catalog sizes must be at least 1000, got {sizes[0]}")
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=catalog_sizes, default="10000,100000,1000000",
                        help="catalog sizes, comma-separated")
    parser.add_argument("--out", type=Path, default=common.RESULTS, help="folder of the results file")
    parser.add_argument("--requests", type=int, default=400, help="timed requests per size")
    parser.add_argument("--clients", type=int, default=8, help="concurrent client threads")
    parser.add_argument("--onboard", type=int, default=10, help="timed onboardings per size")
    parser.add_argument("--skew", type=float, default=0.8, help="Zipf exponent of each code level")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sizes = args.sizes
    if args.threads:
        torch.set_num_threads(args.threads)
    wall = time.perf_counter()
    config = recipe(args.seed)
    with tempfile.TemporaryDirectory(prefix="catalog-scale-") as scratch:
        rows = [measure_size(n, args, config, Path(scratch)) for n in sizes]
    settings = {"sizes": sizes, "levels": f"{LEVELS} x {CODEBOOK} + append collision level", "skew": args.skew,
                "recipe": [p.relative_to(ROOT).as_posix() for p in RECIPES], "model": "random-init item-causal "
                "(inference build_model; serving cost does not depend on training)", "users": USERS,
                "requests": args.requests, "warmup_requests": WARMUP, "history_items": list(HISTORY), "k": 10,
                "clients": f"{args.clients} threads in-process -> MicroBatcher -> Recommender.recommend (no HTTP)",
                "batching": vars(BatchSettings()), "onboard": args.onboard, "torch_threads": torch.get_num_threads(),
                "memory": "build_peak_rss_delta_bytes: VmHWM after compose - VmRSS before (malloc_trim, VmHWM "
                          "reset); peak_rss_bytes: the process's VmHWM from that build to the end of the size",
                "seed": args.seed}
    common.write_result("catalog-scale", "synthetic", "serving", {"sizes": rows, "targets": targets(rows)},
                        wall_seconds=time.perf_counter() - wall, config=settings, reference=TARGETS, directory=args.out)


if __name__ == "__main__":
    sys.exit(main())
