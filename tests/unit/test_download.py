"""`mmgr.data.download` against a local HTTP server with Range support (no internet needed)."""

from __future__ import annotations

import hashlib
import http.server
import re
import socket
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mmgr.data import download as dl
from mmgr.errors import ConfigError, MmgrError

PAYLOAD = bytes(range(256)) * 400  # 100 KiB, not a multiple of the chunk size


@dataclass
class Server:
    """What the test handler serves and what it saw."""

    root: Path  # files served under {base_url}/
    base_url: str = ""
    ignore_range: bool = False
    truncate: bool = False  # announce the full length, send half, close
    requests: list[dict[str, str]] = field(default_factory=list)

    def range_headers(self) -> list[str | None]:
        return [r.get("Range") for r in self.requests]


class RangeHandler(http.server.BaseHTTPRequestHandler):
    """GET files from `server.state.root`, honouring `Range: bytes=N-[M]` with 206 / 416."""

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        state: Server = self.server.state  # type: ignore[attr-defined]
        state.requests.append({"path": self.path, **dict(self.headers.items())})
        path = state.root.parent / self.path.lstrip("/")  # the URL path is /files/<name>
        if not path.is_file():
            self.send_error(404, "Not Found")
            return
        data = path.read_bytes()
        wanted = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if wanted and not state.ignore_range:
            start = int(wanted.group(1))
            end = int(wanted.group(2)) if wanted.group(2) else len(data) - 1
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = data[start:end + 1]
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{start + len(body) - 1}/{len(data)}")
        else:
            body = data
            self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2] if state.truncate else body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    root = tmp_path / "served" / "files"
    root.mkdir(parents=True)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    httpd.daemon_threads = True
    state = Server(root=root, base_url=f"http://127.0.0.1:{httpd.server_address[1]}/files")
    httpd.state = state  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def _serve(server: Server, name: str, data: bytes = PAYLOAD) -> str:
    (server.root / name).write_bytes(data)
    return f"{server.base_url}/{name}"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_full_download_writes_checksum_file(server: Server, tmp_path: Path) -> None:
    url = _serve(server, "reviews.json.gz")
    dest = dl.fetch(url, tmp_path / "out" / "reviews.json.gz", progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert not dl.part_path(dest).exists()
    sidecar = dest.with_name("reviews.json.gz.sha256")
    assert sidecar.read_text() == f"{_sha(PAYLOAD)}  reviews.json.gz\n"
    assert server.range_headers() == [None]


def test_known_checksum_verified_and_progress_bar_runs(server: Server, tmp_path: Path) -> None:
    url = _serve(server, "a.bin")
    dest = dl.fetch(url, tmp_path / "a.bin", sha256=_sha(PAYLOAD).upper(), progress=True)
    assert dest.read_bytes() == PAYLOAD


def test_complete_file_is_skipped(server: Server, tmp_path: Path) -> None:
    url = _serve(server, "a.bin")
    dest = tmp_path / "a.bin"
    dest.write_bytes(PAYLOAD)
    assert dl.fetch(url, dest, sha256=_sha(PAYLOAD), progress=False) == dest
    assert dl.fetch(url, dest, progress=False) == dest  # unknown checksum: existing file is trusted
    assert server.requests == []
    assert dest.with_name("a.bin.sha256").exists()


def test_stale_file_with_wrong_checksum_is_downloaded_again(server: Server, tmp_path: Path) -> None:
    url = _serve(server, "a.bin")
    dest = tmp_path / "a.bin"
    dest.write_bytes(b"old")
    dl.fetch(url, dest, sha256=_sha(PAYLOAD), progress=False)
    assert dest.read_bytes() == PAYLOAD


def test_resume_from_part_sends_range(server: Server, tmp_path: Path) -> None:
    url = _serve(server, "a.bin")
    dest = tmp_path / "a.bin"
    dl.part_path(dest).write_bytes(PAYLOAD[:30_000])
    dl.fetch(url, dest, sha256=_sha(PAYLOAD), progress=False)
    assert server.range_headers() == ["bytes=30000-"]
    assert dest.read_bytes() == PAYLOAD
    assert not dl.part_path(dest).exists()


def test_server_ignoring_range_restarts_from_zero(server: Server, tmp_path: Path) -> None:
    server.ignore_range = True
    url = _serve(server, "a.bin")
    dest = tmp_path / "a.bin"
    dl.part_path(dest).write_bytes(b"garbage that must not stay in front")
    dl.fetch(url, dest, progress=False)
    assert server.range_headers() == ["bytes=35-"]
    assert dest.read_bytes() == PAYLOAD


def test_part_already_complete_is_finished_after_416(server: Server, tmp_path: Path) -> None:
    url = _serve(server, "a.bin")
    dest = tmp_path / "a.bin"
    dl.part_path(dest).write_bytes(PAYLOAD)
    dl.fetch(url, dest, sha256=_sha(PAYLOAD), progress=False)
    assert dest.read_bytes() == PAYLOAD


def test_checksum_mismatch_raises_and_leaves_no_file(server: Server, tmp_path: Path) -> None:
    url = _serve(server, "a.bin")
    dest = tmp_path / "a.bin"
    with pytest.raises(MmgrError) as err:
        dl.fetch(url, dest, sha256="0" * 64, progress=False)
    message = str(err.value)
    assert url in message and "0" * 64 in message and _sha(PAYLOAD) in message
    assert not dest.exists() and not dl.part_path(dest).exists()


def test_404_names_the_url(server: Server, tmp_path: Path) -> None:
    url = f"{server.base_url}/missing.json.gz"
    with pytest.raises(MmgrError, match="404") as err:
        dl.fetch(url, tmp_path / "missing.json.gz", progress=False)
    assert url in str(err.value) and "--base-url" in str(err.value)
    assert not (tmp_path / "missing.json.gz").exists()


def test_truncated_transfer_keeps_part_and_resumes(server: Server, tmp_path: Path) -> None:
    url = _serve(server, "a.bin")
    dest = tmp_path / "a.bin"
    server.truncate = True
    with pytest.raises(MmgrError, match="kept"):
        dl.fetch(url, dest, progress=False)
    assert dl.part_path(dest).stat().st_size == len(PAYLOAD) // 2
    server.truncate = False
    dl.fetch(url, dest, progress=False)
    assert server.range_headers() == [None, f"bytes={len(PAYLOAD) // 2}-"]
    assert dest.read_bytes() == PAYLOAD


def test_connection_refused_is_an_mmgr_error(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/a.bin"
    with pytest.raises(MmgrError, match="--base-url") as err:
        dl.fetch(url, tmp_path / "a.bin", progress=False)
    assert url in str(err.value)


def test_download_amazon_from_mirror(server: Server, tmp_path: Path) -> None:
    _serve(server, "reviews_Toys_and_Games_5.json.gz", b"reviews")
    _serve(server, "meta_Toys_and_Games.json.gz", b"meta")
    paths = dl.download("amazon-2014", tmp_path / "data", category="Toys_and_Games",
                        base_url=server.base_url + "/", progress=False)
    assert [p.name for p in paths] == ["reviews_Toys_and_Games_5.json.gz", "meta_Toys_and_Games.json.gz"]
    assert [p.read_bytes() for p in paths] == [b"reviews", b"meta"]


def test_public_urls_and_default_categories() -> None:
    assert dl.SOURCES["amazon-2014"].resolve() == [
        ("https://snap.stanford.edu/data/amazon/productGraph/categoryFiles/reviews_Beauty_5.json.gz",
         "reviews_Beauty_5.json.gz", None),
        ("https://snap.stanford.edu/data/amazon/productGraph/categoryFiles/meta_Beauty.json.gz",
         "meta_Beauty.json.gz", None),
    ]
    base = "https://mcauleylab.ucsd.edu/public_datasets/data/amazon_2023/raw"
    assert [u for u, _, _ in dl.SOURCES["amazon-2023"].resolve()] == [
        f"{base}/review_categories/All_Beauty.jsonl.gz", f"{base}/meta_categories/meta_All_Beauty.jsonl.gz"]
    assert dl.SOURCES["movielens"].resolve() == [
        ("https://files.grouplens.org/datasets/movielens/ml-100k.zip", "ml-100k.zip", None)]
    assert dl.SOURCES["movielens"].resolve(base_url="http://mirror/x")[0][0] == "http://mirror/x/ml-100k.zip"
    assert all(source.license for source in dl.SOURCES.values())


def test_unknown_dataset_and_bad_category(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="amazon-2014, amazon-2023, movielens"):
        dl.download("netflix", tmp_path)
    with pytest.raises(ConfigError, match="invalid category"):
        dl.download("amazon-2014", tmp_path, category="../etc")


def _zip(path: Path, members: dict[str, bytes]) -> bytes:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path.read_bytes()


def test_movielens_download_extracts_zip(server: Server, tmp_path: Path) -> None:
    _zip(server.root / "ml-100k.zip", {"ml-100k/u.data": b"1\t2\t5\t881250949\n", "ml-100k/README": b"hi"})
    out = tmp_path / "data"
    paths = dl.download("movielens", out, base_url=server.base_url, progress=False)
    assert paths == [out / "ml-100k.zip", out / "ml-100k"]
    assert (out / "ml-100k" / "u.data").read_bytes() == b"1\t2\t5\t881250949\n"
    assert (out / "ml-100k.zip.sha256").exists()


@pytest.mark.parametrize("member", ["../evil", "ml-100k/../../evil", "/abs/evil", "C:/evil", "..\\evil"])
def test_zip_with_unsafe_member_is_rejected(tmp_path: Path, member: str) -> None:
    archive = tmp_path / "bad.zip"
    _zip(archive, {"ok.txt": b"fine", member: b"pwned"})
    out = tmp_path / "out"
    with pytest.raises(MmgrError, match="unsafe member"):
        dl.extract_zip(archive, out)
    assert not out.exists() or not any(out.iterdir())
    assert not (tmp_path / "evil").exists()
