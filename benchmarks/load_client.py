"""The load client of benchmarks/serve_load.py, a process of its own (standard library only, so it stays light):
`concurrency` threads, each with one keep-alive `http.client` connection, POST pre-encoded JSON bodies to
`/recommend` back to back until every body is answered or `seconds` have passed.

    echo '{"url": "http://127.0.0.1:8000", "bodies": [{"history": ["i1"], "k": 10}], "concurrency": 1,
           "seconds": 10, "server_pid": 1234}' | python benchmarks/load_client.py

Reads one job (JSON) on stdin, writes one result (JSON) on stdout: the client-measured latency of every request sent
(seconds), the errors (non-200 answers or connection failures), the wall seconds of the run and the CPU seconds this
process (all its threads) and the server process (`server_pid`, null when it cannot be read) used over exactly that
window. CPU seconds / wall seconds is a process's CPU share (1.0 = one core busy all the time).
"""

from __future__ import annotations

import http.client
import itertools
import json
import os
import sys
import threading
import time
from typing import Any
from urllib.parse import urlsplit


def process_cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds so far of process `pid` (all its threads) and of its child processes (a server of
    several processes), from /proc/<pid>/stat; None when it cannot be read."""
    if pid is None:
        return None
    try:
        stats = {int(entry): stat_fields(int(entry)) for entry in os.listdir("/proc") if entry.isdigit()}
        stats = {p: fields for p, fields in stats.items() if fields is not None}
        tree = {pid} | {p for p, fields in stats.items() if int(fields[1]) == pid}   # ppid (field 4)
        return sum(int(stats[p][11]) + int(stats[p][12]) for p in tree) / os.sysconf("SC_CLK_TCK")  # utime, stime
    except (OSError, ValueError, IndexError, KeyError) as exc:
        print(f"load_client: cannot read the CPU time of process {pid}: {exc}", file=sys.stderr)
        return None


def stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (which may hold spaces); None if it has gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def post(connection: http.client.HTTPConnection, body: bytes) -> bool:
    """One POST /recommend on a kept-alive connection, its answer read to the end; True if it was a 200."""
    connection.request("POST", "/recommend", body, {"content-type": "application/json"})
    response = connection.getresponse()
    response.read()
    return response.status == 200


def drive(url: str, bodies: list[bytes], concurrency: int, seconds: float) -> tuple[list[float], int]:
    """Send `bodies` from `concurrency` threads until all are answered or `seconds` pass: (latencies, errors)."""
    address = urlsplit(url)
    tickets, lock = itertools.count(), threading.Lock()
    deadline = time.perf_counter() + seconds
    latencies: list[float] = []
    errors = 0

    def client() -> None:
        nonlocal errors
        connection = http.client.HTTPConnection(address.hostname, address.port, timeout=60)
        try:
            while time.perf_counter() < deadline:
                with lock:
                    index = next(tickets)
                if index >= len(bodies):
                    return
                started = time.perf_counter()
                try:
                    ok = post(connection, bodies[index])
                except (OSError, http.client.HTTPException):
                    ok = False
                    connection.close()                   # the next request opens a new connection
                elapsed = time.perf_counter() - started
                with lock:
                    latencies.append(elapsed)
                    errors += not ok
        finally:
            connection.close()

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, errors


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """One setting: the latencies and errors, with this process's and the server's CPU seconds over its wall time."""
    bodies = [json.dumps(body).encode() for body in job["bodies"]]       # encoded before the clock starts
    server_before, client_before = process_cpu_seconds(job.get("server_pid")), time.process_time()
    started = time.perf_counter()
    latencies, errors = drive(job["url"], bodies, int(job["concurrency"]), float(job["seconds"]))
    wall = time.perf_counter() - started
    client_cpu, server_after = time.process_time() - client_before, process_cpu_seconds(job.get("server_pid"))
    server_cpu = server_after - server_before if server_before is not None and server_after is not None else None
    return {"latencies": latencies, "errors": errors, "wall_seconds": wall, "client_cpu_seconds": client_cpu,
            "server_cpu_seconds": server_cpu, "client_pid": os.getpid()}


def main() -> None:
    json.dump(run_job(json.load(sys.stdin)), sys.stdout)


if __name__ == "__main__":
    main()
