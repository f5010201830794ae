"""Start `mmgr serve` as a subprocess on a free port of 127.0.0.1 and wait until it answers (tests, benchmarks)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from mmgr.errors import MmgrError


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(run: Path, options: list[str] | tuple[str, ...] = (), env: dict[str, str] | None = None,
                 timeout_s: float = 60.0, log: Path | None = None) -> tuple[subprocess.Popen, str]:
    """(process, base URL) once GET /health answers; the server's stderr is in the error if it exits first. Its
    stdout (the start-up lines) goes to the file `log`, or nowhere."""
    port = free_port()
    with open(log, "w") if log else contextlib.nullcontext(subprocess.DEVNULL) as stdout:
        process = subprocess.Popen([sys.executable, "-m", "mmgr", "serve", str(run), "--host", "127.0.0.1",
                                    "--port", str(port), *options], stdout=stdout, stderr=subprocess.PIPE,
                                   text=True, env={**os.environ, **(env or {})})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=1) as reply:
                if reply.status == 200:
                    return process, url
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.1)
        if process.poll() is not None:
            raise MmgrError(f"mmgr serve {run} exited: {process.stderr.read() if process.stderr else ''}")
    stop_server(process)
    raise MmgrError(f"mmgr serve {run} did not answer /health within {timeout_s:.0f} s")


def stop_server(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
