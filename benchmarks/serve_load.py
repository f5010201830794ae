"""Load test of the HTTP server `mmgr serve BUNDLE`: throughput, latency and CPU shares of `POST /recommend` with
dynamic micro-batching on (`--max-wait-ms 5 --max-batch 32`) and off (`--no-batching`), for 1, 8 and 32 concurrent
clients, judged against the serving targets.

    python benchmarks/serve_load.py [--dataset synthetic|beauty|beauty-item-causal] [--requests 200] [--seconds 60]
                                    [--seed 0] [--workers 1,2] [--processes 1,2] [--out benchmarks/results]

Server settings, each a server of its own, side by side in one run: batching on with each `--workers` count (decoding
threads in one process), batching on with each `--processes` count above 1 (`mmgr serve --processes N`, one decoding
worker each; the server's CPU share and its /metrics then sum its processes; measuring starts once every process
is up), and batching off.

The model: `synthetic`, a small TIGER on the synthetic world (400 items, 600 users; RQ-k-means 3 x 16 SIDs, T5
d_model 64, 2 + 2 layers, 200 steps); `beauty`, TIGER as configs/tiger.yaml gives it (RQ-VAE 3 x 256 + collision
code, T5 4 + 4 layers, d_model 128, beam 20) on Amazon Beauty (12,101 items), trained 40 steps;
`beauty-item-causal`, TIGER's SIDs on the item-level causal backbone as configs/tiger-item-causal.yaml gives it
(RQ-VAE 3 x 256 + collision code, 4 Llama blocks, d_model 128, one position per history item, beam 20) with the
model overrides the Arts suite trains it with (configs/suites/arts.yaml: hidden dropout 0.3, no user token), on
Amazon Beauty, trained 40 steps. Serving cost does not depend on how long a model trained (same shapes, same beam
search), so a few dozen steps suffice here; the ranked lists are not meant to be good. Each is trained once into
runs/serve-<dataset>, exported with `mmgr export` to runs/serve-<dataset>.bundle, and reused when finished.

The real server runs the bundle as a subprocess on a free port of 127.0.0.1. The load client is a third process
(benchmarks/load_client.py, standard library only): for each setting it runs `concurrency` threads, each with one
keep-alive HTTP connection, sending pre-encoded bodies {"history": 1-20 random real item ids, "k": 10} (seeded; the
same bodies in both modes) back to back until `--requests` are answered or `--seconds` have passed. Before each
setting, 2 x concurrency warm-up requests (at least 5) at that concurrency are sent and not counted. Latency is
measured by the client; the mean batch size comes from the server's /metrics (`mmgr_batch_size_sum` / `_count`
deltas over the setting); the client's and the server's CPU shares are their processes' CPU seconds (user + system,
all threads) over the setting's wall seconds (1.0 = one core busy throughout): a client share near 1 means the
client, not the server, bounds the numbers. Each target (`TARGETS`: p99 <= 50 ms at 8 clients and >= 150 requests/s
at 32 clients, batching on, no errors; stated for `beauty-item-causal`) is written met or not met. Writes
<out>/serve-<dataset>-load.json. For the targets, on otherwise idle cores (200 requests at 150/s is 1.3 s, too short
for a p99): `python benchmarks/serve_load.py --dataset beauty-item-causal --requests 2000`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

from mmgr.serving.launch import start_server, stop_server  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CLIENT = Path(__file__).resolve().parent / "load_client.py"
TRAIN = {
    "synthetic": ["--recipe", "configs/synthetic.yaml", "--recipe", "configs/tiger.yaml", "--no-progress",
                  "tokenizer.method=rq-kmeans", "tokenizer.levels=3", "tokenizer.codebook_size=16",
                  "model.d_model=64", "model.num_layers=2", "model.num_decoder_layers=2", "model.num_heads=4",
                  "model.d_kv=16", "model.d_ff=256", "model.user_buckets=0", "training.max_steps=200",
                  "training.batch_size=128"],
    "beauty": ["--recipe", "configs/beauty.yaml", "--recipe", "configs/tiger.yaml", "--no-progress",
               "training.max_steps=40"],
    "beauty-item-causal": ["--recipe", "configs/beauty.yaml", "--recipe", "configs/tiger-item-causal.yaml",
                           "--no-progress", "model.hidden_dropout=0.3", "model.user_buckets=0",
                           "training.max_steps=40"],
}
MODES = {"on": ["--max-wait-ms", "5", "--max-batch", "32"], "off": ["--no-batching"]}
CONCURRENCY = (1, 8, 32)
TARGET = {"source": "issue: Beauty bundle of the item-level causal backbone: p99 <= 50 ms at 8 concurrent clients, "
                    ">= 150 requests/s at 32 clients; load client in its own process, its CPU share reported",
          "dataset": "beauty-item-causal", "p99_ms_at_8_clients_batching_on": 50,
          "requests_per_second_at_32_clients_batching_on": 150}
TARGETS = [{"name": "p99_ms_at_8_clients_batching_on", "batching": "on", "concurrency": 8, "metric": "p99_ms",
            "at_most": 50.0},
           {"name": "requests_per_second_at_32_clients_batching_on", "batching": "on", "concurrency": 32,
            "metric": "requests_per_second", "at_least": 150.0}]
WARMUP = 5
START_SECONDS = 600.0                                 # a loaded machine can take minutes to import and load


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


def wait_for_processes(url: str, processes: int) -> None:
    """Return once every server process has started (/metrics has a start time per process); the first to answer
    /health does not mean the others are up, and connections opened before would all go to it."""
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        lines = httpx.get(f"{url}/metrics", timeout=10).text.splitlines()
        if sum(line.startswith("mmgr_process_start_time_seconds") for line in lines) >= processes:
            return
        time.sleep(0.2)
    raise RuntimeError(f"only some of the {processes} server processes started within {START_SECONDS} s")


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


def load(url: str, server_pid: int, requests: list[dict[str, Any]], concurrency: int,
         seconds: float) -> dict[str, Any]:
    """Run `requests` through the load client process (benchmarks/load_client.py); its result: latencies, errors,
    wall seconds and the client's and server's CPU seconds over that wall time."""
    job = {"url": url, "server_pid": server_pid, "bodies": requests, "concurrency": concurrency, "seconds": seconds}
    done = subprocess.run([sys.executable, str(CLIENT)], input=json.dumps(job), capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(f"load client failed ({done.returncode}): {done.stderr}")
    if done.stderr:
        print(done.stderr, end="", file=sys.stderr)
    return json.loads(done.stdout)


def share(cpu_seconds: float | None, wall: float) -> float | None:
    """CPU seconds per wall second (1.0 = one core busy throughout), or None when the CPU time was not read."""
    return round(cpu_seconds / wall, 3) if cpu_seconds is not None and wall > 0 else None


def measure(url: str, server_pid: int, batching: str, concurrency: int, requests: list[dict[str, Any]],
            seconds: float) -> dict[str, Any]:
    """One setting's row: throughput, latency percentiles, errors, the server's mean batch size and the client's
    and server's CPU shares."""
    sum_before, count_before = batch_totals(url)
    result = load(url, server_pid, requests, concurrency, seconds)
    sum_after, count_after = batch_totals(url)
    wall, latencies = result["wall_seconds"], result["latencies"]
    ms = np.array(latencies or [np.nan]) * 1000
    batches = count_after - count_before
    return {"batching": batching, "concurrency": concurrency, "requests": len(latencies), "errors": result["errors"],
            "seconds": round(wall, 3), "requests_per_second": round(len(latencies) / wall, 2),
            "p50_ms": round(float(np.percentile(ms, 50)), 2), "p95_ms": round(float(np.percentile(ms, 95)), 2),
            "p99_ms": round(float(np.percentile(ms, 99)), 2),
            "mean_batch_size": round((sum_after - sum_before) / batches, 2) if batches else None,
            "client_cpu_share": share(result["client_cpu_seconds"], wall),
            "server_cpu_share": share(result["server_cpu_seconds"], wall)}


def judge(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each of `TARGETS` with the measured value and whether it was met (a setting with errors never meets it), on
    the server setting (decoding workers) that came closest."""
    verdicts = []
    for target in TARGETS:
        setting = [r for r in rows if r["batching"] == target["batching"] and r["concurrency"] == target["concurrency"]]
        candidates = [r for r in setting if r["errors"] == 0] or setting
        sign = 1 if "at_most" in target else -1
        row = min(candidates, key=lambda r: sign * r[target["metric"]], default=None)
        value = row[target["metric"]] if row is not None else None
        within = value is not None and not np.isnan(value) and (
            value <= target["at_most"] if "at_most" in target else value >= target["at_least"])
        verdicts.append({**target, "value": value, "errors": row["errors"] if row else None,
                         "workers": row["workers"] if row else None,
                         "processes": row.get("processes", 1) if row else None,
                         "met": bool(within and row["errors"] == 0)})
    return verdicts


COLUMNS = ["batching", "processes", "workers", "concurrency", "requests", "errors", "requests_per_second", "p50_ms",
           "p95_ms", "p99_ms", "mean_batch_size", "client_cpu_share", "server_cpu_share"]


def print_row(row: dict[str, Any] | None = None) -> None:
    """One line of the results table; the header without a row."""
    print("  ".join(f"{(row[k] if row else k)!s:>{max(len(k), 8)}}" for k in COLUMNS), flush=True)


def run_mode(bundle: Path, batching: str, workers: int, processes: int, item_ids: list[str],
             args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every concurrency's row for one batching mode, number of server processes and of decoding workers per
    process, on a server started for it."""
    process, url = start_server(bundle, [*MODES[batching], "--workers", str(workers), "--processes", str(processes),
                                         "--no-onboarding"], timeout_s=START_SECONDS)
    rows = []
    try:
        wait_for_processes(url, processes)
        rng = np.random.default_rng(args.seed)                    # the same bodies for both modes
        warm = np.random.default_rng(args.seed + 1)
        for concurrency in CONCURRENCY:
            load(url, process.pid, bodies(item_ids, max(WARMUP, 2 * concurrency), warm), concurrency, args.seconds)
            rows.append({"processes": processes, "workers": workers,
                         **measure(url, process.pid, batching, concurrency, bodies(item_ids, args.requests, rng),
                                   args.seconds)})
            print_row(rows[-1])
    finally:
        stop_server(process)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", choices=sorted(TRAIN), default="synthetic")
    parser.add_argument("--requests", type=int, default=200, help="requests per setting (at most)")
    parser.add_argument("--seconds", type=float, default=60.0, help="time bound per setting")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", default="1", help="decoding workers of the batching server, comma-separated "
                                                      "(each a server of its own, side by side in one run)")
    parser.add_argument("--processes", default="1", help="server processes (`mmgr serve --processes`, one decoding "
                                                        "worker each), comma-separated; 1 = the --workers servers")
    parser.add_argument("--out", type=Path, default=common.RESULTS, help="folder of the results file")
    args = parser.parse_args()
    wall = time.perf_counter()
    bundle = trained_bundle(args.dataset)
    item_ids = pq.read_table(bundle / "items.parquet", columns=["item_id"]).column("item_id").to_pylist()
    print_row()
    settings = [("on", int(w), 1) for w in args.workers.split(",")] + \
        [("on", 1, int(p)) for p in args.processes.split(",") if int(p) > 1] + [("off", 1, 1)]
    rows = [row for batching, workers, processes in settings
            for row in run_mode(bundle, batching, workers, processes, item_ids, args)]
    verdicts = judge(rows)
    for verdict in verdicts:
        print(f"target {verdict['name']}: {verdict['value']} -> {'met' if verdict['met'] else 'NOT met'}")
    config = {"bundle": str(bundle), "train": ["mmgr", "run", *TRAIN[args.dataset]], "server": dict(MODES),
              "workers": [w for _, w, _ in settings], "processes": [p for _, _, p in settings],
              "host": "127.0.0.1", "client": "benchmarks/load_client.py, its own process (threads, http.client "
              "keep-alive)", "concurrency": list(CONCURRENCY), "requests_per_setting": args.requests,
              "seconds_per_setting": args.seconds, "warmup_requests": f"max({WARMUP}, 2 x concurrency) per setting",
              "history_length": [1, 20], "k": 10, "seed": args.seed, "items": len(item_ids),
              "cpu_count": os.cpu_count(), "cpus_usable": len(os.sched_getaffinity(0))}
    common.write_result("serve", args.dataset, "load", rows, wall_seconds=time.perf_counter() - wall, config=config,
                        reference=TARGET, extra={"targets": verdicts}, directory=args.out)


if __name__ == "__main__":
    main()
