"""benchmarks/serve_load.py and its load client (benchmarks/load_client.py): the client process counts answers,
errors and CPU seconds against a stand-in server, and the targets are judged met or not met (errors never meet)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load_benchmark(name: str, monkeypatch):
    """benchmarks/<name>.py, loaded by path (its folder stays off sys.path for other tests)."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Answer(BaseHTTPRequestHandler):
    """POST /recommend: 200 unless the body asks for k=0 (then 422), as the real server would refuse it."""

    protocol_version = "HTTP/1.1"                         # keep-alive, as uvicorn answers

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        status = 422 if b'"k": 0' in body else 200
        self.send_response(status)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_the_client_counts_every_answer_and_error_and_reads_cpu_seconds(server, monkeypatch):
    client = load_benchmark("load_client", monkeypatch)
    bodies = [{"history": ["a"], "k": 10}] * 9 + [{"history": ["a"], "k": 0}] * 3
    result = client.run_job({"url": server, "server_pid": os.getpid(), "bodies": bodies, "concurrency": 4,
                             "seconds": 30})
    assert len(result["latencies"]) == 12 and result["errors"] == 3
    assert result["wall_seconds"] > 0 and result["client_cpu_seconds"] >= 0
    assert result["server_cpu_seconds"] is not None and result["server_cpu_seconds"] >= 0


def test_cpu_seconds_of_a_process_from_proc_follow_its_work(monkeypatch):
    client = load_benchmark("load_client", monkeypatch)
    before = client.process_cpu_seconds(os.getpid())
    end = time.process_time() + 0.1
    while time.process_time() < end:
        pass
    assert client.process_cpu_seconds(os.getpid()) - before >= 0.05
    assert client.process_cpu_seconds(None) is None


def test_cpu_seconds_of_a_server_count_its_child_processes(monkeypatch):
    client = load_benchmark("load_client", monkeypatch)
    before = client.process_cpu_seconds(os.getpid())
    burn = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass\ntime.sleep(3)"
    child = subprocess.Popen([sys.executable, "-c", burn])
    try:
        time.sleep(1.5)                                   # the child has burnt its 0.3 s and still runs
        assert client.process_cpu_seconds(os.getpid()) - before >= 0.25
    finally:
        child.kill()
        child.wait()


def row(batching: str, concurrency: int, rps: float, p99: float, errors: int = 0, workers: int = 1) -> dict:
    return {"batching": batching, "concurrency": concurrency, "requests_per_second": rps, "p99_ms": p99,
            "errors": errors, "workers": workers}


def test_targets_are_judged_on_their_settings_and_errors_never_meet_them(monkeypatch):
    load = load_benchmark("serve_load", monkeypatch)
    rows = [row("on", 8, 90.0, 40.0), row("on", 32, 200.0, 300.0, errors=1), row("off", 8, 10.0, 20.0)]
    met = {v["name"]: (v["value"], v["met"]) for v in load.judge(rows)}
    assert met == {"p99_ms_at_8_clients_batching_on": (40.0, True),
                   "requests_per_second_at_32_clients_batching_on": (200.0, False)}
    assert [v["met"] for v in load.judge([row("on", 8, 90.0, 50.01), row("on", 32, 150.0, 1.0)])] == [False, True]
    assert [v["value"] for v in load.judge([])] == [None, None]


def test_each_target_is_judged_on_the_worker_setting_that_came_closest(monkeypatch):
    load = load_benchmark("serve_load", monkeypatch)
    rows = [row("on", 8, 90.0, 80.0), row("on", 32, 120.0, 300.0),
            row("on", 8, 95.0, 45.0, workers=2), row("on", 32, 160.0, 250.0, workers=2, errors=1)]
    verdicts = {v["name"]: (v["value"], v["workers"], v["met"]) for v in load.judge(rows)}
    assert verdicts == {"p99_ms_at_8_clients_batching_on": (45.0, 2, True),
                        "requests_per_second_at_32_clients_batching_on": (120.0, 1, False)}   # errors never count
