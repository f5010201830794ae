"""A real headless Chromium (Debian's /usr/bin/chromium) driven over the DevTools protocol, for tests that check a
rendered page: open a URL, wait until it and its images have loaded, evaluate JavaScript in it."""

from __future__ import annotations

import itertools
import json
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Flags for a closed network: without the background-networking ones Chromium keeps dialling out.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--remote-debugging-port=0", "--remote-allow-origins=*"]


def available() -> bool:
    return Path(CHROMIUM).is_file()


class Browser:
    """One headless Chromium with one page; use as a context manager."""

    def __enter__(self) -> Browser:
        import websocket

        self._profile = tempfile.TemporaryDirectory()
        self._log = Path(self._profile.name) / "chromium.log"          # a file: a pipe left unread would fill
        with self._log.open("w") as log:
            self.process = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={self._profile.name}/profile",
                                             "about:blank"], stdout=subprocess.DEVNULL, stderr=log)
        self.socket = None
        try:
            port = self._devtools_port()
            pages = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10).read())
            page = next(p for p in pages if p["type"] == "page")
            self.socket = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=30)
        except BaseException:
            self.__exit__()
            raise
        self._ids = itertools.count(1)
        return self

    def _devtools_port(self) -> int:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            found = re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", self._log.read_text())
            if found:
                return int(found.group(1))
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"chromium did not start its DevTools endpoint: {self._log.read_text()[-500:]}")

    def __exit__(self, *exc: object) -> None:
        if self.socket is not None:
            self.socket.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self._profile.cleanup()

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """One DevTools command; its result (events in between are skipped)."""
        ident = next(self._ids)
        self.socket.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("id") == ident:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def open(self, url: str, timeout_s: float = 30) -> None:
        """Navigate and wait until the document and every image on it have finished loading."""
        self.call("Page.navigate", url=url)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:                # the new document, loaded with all its images
            if self.evaluate(f"document.URL === {json.dumps(url)} && document.readyState === 'complete' && "
                             "Array.from(document.images).every(i => i.complete)"):
                return
            time.sleep(0.1)
        raise TimeoutError(f"{url} did not finish loading in {timeout_s} s")
