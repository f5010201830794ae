"""Load test of the HTTP server `mmgr serve BUNDLE`: throughput and latency of `POST /recommend` with dynamic
micro-batching on (`--max-wait-ms 5 --max-batch 32`) and off (`--no-batching`), for 1, 8 and 32 concurrent clients.

    python benchmarks/serve_load.py [--dataset synthetic|beauty] [--requests 200] [--seconds 60] [--seed 0]

The model: `synthetic`, a small TIGER on the synthetic world (400 items, 600 users; RQ-k-means 3 x 16 SIDs, T5
d_model 64, 2 + 2 layers, 200 steps); `beauty`, TIGER as configs/tiger.yaml gives it (RQ-VAE 3 x 256 + collision
code, T5 4 + 4 layers, d_model 128, beam 20) on Amazon Beauty (12,101 items), trained 40 steps (serving cost does
not depend on how long it trained). Each is trained once into runs/serve-<dataset>, exported with `mmgr export` to
runs/serve-<dataset>.bundle, and reused when finished. The real server runs the bundle as a subprocess on a free
port of 127.0.0.1; each client is a thread with its own `httpx.Client`, sending bodies {"history": 1-20 random real
item ids, "k": 10} (seeded) back to back until `--requests` are answered or `--seconds` have passed. Latency is
measured by the client; the mean batch size comes from the server's /metrics (`mmgr_batch_size_sum` / `_count`
deltas over the setting). Writes benchmarks/results/serve-<dataset>-load.json.
"""

from __future__ import annotations

import argparse
import itertools
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

from mmgr.serving.launch import start_server, stop_server  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TRAIN = {
    "synthetic": ["--recipe", "configs/synthetic.yaml", "--recipe", "configs/tiger.yaml", "--no-progress",
                  "tokenizer.method=rq-kmeans", "tokenizer.levels=3", "tokenizer.codebook_size=16",
                  "model.d_model=64", "model.num_layers=2", "model.num_decoder_layers=2", "model.num_heads=4",
                  "model.d_kv=16", "model.d_ff=256", "model.user_buckets=0", "training.max_steps=200",
                  "training.batch_size=128"],
    "beauty": ["--recipe", "configs/beauty.yaml", "--recipe", "configs/tiger.yaml", "--no-progress",
               "training.max_steps=40"],
}
MODES = {"on": ["--max-wait-ms", "5", "--max-batch", "32"], "off": ["--no-batching"]}
CONCURRENCY = (1, 8, 32)
TARGET = {"source": "serving latency target", "p99_ms_at_8_clients_batching_on": 50,
          "requests_per_second_at_32_clients": 100}
WARMUP = 5


def trained_bundle(dataset: str) -> Path:
    """runs/serve-<dataset>.bundle, from the run that one `mmgr run` trains (each reused once trained)."""
    run = ROOT / "runs" / f"serve-{dataset}"
    bundle = run.with_suffix(".bundle")
    if not (run / "model.safetensors").is_file():
        subprocess.run([sys.executable, "-m", "mmgr", "run", *TRAIN[dataset], "--out", str(run)], cwd=ROOT,
                       check=True)
    if not (bundle / "bundle.json").is_file():
        subprocess.run([sys.executable, "-m", "mmgr", "export", str(run), "--out", str(bundle)], cwd=ROOT,
                       check=True)
    return bundle


def batch_totals(url: str) -> tuple[float, float]:
    """(mmgr_batch_size_sum, mmgr_batch_size_count) from /metrics."""
    values = {}
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        name, _, value = line.partition(" ")
        if name in ("mmgr_batch_size_sum", "mmgr_batch_size_count"):
            values[name] = float(value)
    return values["mmgr_batch_size_sum"], values["mmgr_batch_size_count"]


def bodies(item_ids: list[str], n: int, rng: np.random.Generator) -> list[dict[str, Any]]:
    """n request bodies: histories of 1-20 distinct real item ids, k=10."""
    return [{"history": [item_ids[i] for i in rng.choice(len(item_ids), int(rng.integers(1, 21)), replace=False)],
             "k": 10} for _ in range(n)]


def load(url: str, requests: list[dict[str, Any]], concurrency: int, seconds: float) -> tuple[list[float], int]:
    """Send `requests` from `concurrency` client threads until all are answered or `seconds` pass.
    Returns the latencies (seconds) of every request sent and the count of errors (non-200 or exceptions)."""
    tickets, lock = itertools.count(), threading.Lock()
    deadline = time.perf_counter() + seconds
    latencies: list[float] = []
    errors = 0

    def client() -> None:
        nonlocal errors
        with httpx.Client(base_url=url, timeout=60) as http:
            while time.perf_counter() < deadline:
                with lock:
                    index = next(tickets)
                if index >= len(requests):
                    return
                started = time.perf_counter()
                try:
                    failed = http.post("/recommend", json=requests[index]).status_code != 200
                except httpx.HTTPError:
                    failed = True
                elapsed = time.perf_counter() - started
                with lock:
                    latencies.append(elapsed)
                    errors += failed

    with ThreadPoolExecutor(concurrency) as pool:
        for future in [pool.submit(client) for _ in range(concurrency)]:
            future.result()
    return latencies, errors


def measure(url: str, batching: str, concurrency: int, requests: list[dict[str, Any]],
            seconds: float) -> dict[str, Any]:
    """One setting's row: throughput, latency percentiles, errors and the server's mean batch size."""
    sum_before, count_before = batch_totals(url)
    started = time.perf_counter()
    latencies, errors = load(url, requests, concurrency, seconds)
    wall = time.perf_counter() - started
    sum_after, count_after = batch_totals(url)
    ms = np.array(latencies or [np.nan]) * 1000
    batches = count_after - count_before
    return {"batching": batching, "concurrency": concurrency, "requests": len(latencies), "errors": errors,
            "seconds": round(wall, 3), "requests_per_second": round(len(latencies) / wall, 2),
            "p50_ms": round(float(np.percentile(ms, 50)), 2), "p95_ms": round(float(np.percentile(ms, 95)), 2),
            "p99_ms": round(float(np.percentile(ms, 99)), 2),
            "mean_batch_size": round((sum_after - sum_before) / batches, 2) if batches else None}


COLUMNS = ["batching", "concurrency", "requests", "errors", "requests_per_second", "p50_ms", "p95_ms", "p99_ms",
           "mean_batch_size"]


def print_row(row: dict[str, Any] | None = None) -> None:
    """One line of the results table; the header without a row."""
    print("  ".join(f"{(row[k] if row else k)!s:>{max(len(k), 8)}}" for k in COLUMNS), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", choices=sorted(TRAIN), default="synthetic")
    parser.add_argument("--requests", type=int, default=200, help="requests per setting (at most)")
    parser.add_argument("--seconds", type=float, default=60.0, help="time bound per setting")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    wall = time.perf_counter()
    bundle = trained_bundle(args.dataset)
    item_ids = pq.read_table(bundle / "items.parquet", columns=["item_id"]).column("item_id").to_pylist()
    rows = []
    print_row()
    for batching, options in MODES.items():
        process, url = start_server(bundle, [*options, "--no-onboarding"])
        try:
            rng = np.random.default_rng(args.seed)          # the same bodies for both modes
            load(url, bodies(item_ids, WARMUP, rng), 1, args.seconds)
            for concurrency in CONCURRENCY:
                rows.append(measure(url, batching, concurrency, bodies(item_ids, args.requests, rng), args.seconds))
                print_row(rows[-1])
        finally:
            stop_server(process)
    config = {"bundle": str(bundle), "train": ["mmgr", "run", *TRAIN[args.dataset]], "server": dict(MODES),
              "host": "127.0.0.1", "concurrency": list(CONCURRENCY), "requests_per_setting": args.requests,
              "seconds_per_setting": args.seconds, "warmup_requests": WARMUP, "history_length": [1, 20], "k": 10,
              "seed": args.seed, "items": len(item_ids)}
    common.write_result("serve", args.dataset, "load", rows, wall_seconds=time.perf_counter() - wall, config=config,
                        reference=TARGET)


if __name__ == "__main__":
    main()
