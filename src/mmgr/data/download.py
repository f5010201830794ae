"""`mmgr data download`: fetch public datasets resumably, checksum them, unpack archives safely.

Files are downloaded into `<name>.part` (resumed with an HTTP `Range` request when one exists) and renamed to
their final name only once complete and verified. Where no published checksum is known, the digest is written
beside the file as `<name>.sha256` (the `sha256sum` format) and reported, so later copies can be compared.
Only the standard library's `urllib.request` talks HTTP.
"""

from __future__ import annotations

import http.client
import logging
import os
import re
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import BinaryIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from mmgr.errors import ConfigError, MmgrError
from mmgr.io import sha256_file, write_bytes_atomic

log = logging.getLogger(__name__)

TIMEOUT_S = 30.0
CHUNK = 1 << 20
USER_AGENT = "mmgr-download/0.1 (python-urllib)"
_CATEGORY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_CONTENT_RANGE_RE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
_UNSATISFIED_RANGE_RE = re.compile(r"bytes\s+\*/(\d+)")


@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset: URL and file-name templates (`{category}` is filled in), optional sha256."""

    url: str
    name: str
    sha256: str | None = None


@dataclass(frozen=True)
class DatasetSource:
    """Where a public dataset lives, which category it defaults to, and the terms it comes under."""

    name: str
    files: tuple[RemoteFile, ...]
    license: str
    default_category: str
    categories: tuple[str, ...] = ()  # known examples; other names that look like file names are allowed
    extract: bool = False  # unzip the downloaded archives into the output folder

    def resolve(self, category: str | None = None, base_url: str | None = None
                ) -> list[tuple[str, str, str | None]]:
        """(url, file name, sha256) of each file for `category`; `base_url` replaces all but the file name."""
        category = self.check_category(category)
        resolved = []
        for remote in self.files:
            name = remote.name.format(category=category)
            url = remote.url.format(category=category)
            if base_url:
                url = base_url.rstrip("/") + "/" + name
            resolved.append((url, name, remote.sha256))
        return resolved

    def check_category(self, category: str | None) -> str:
        """The category to use (default when None); ConfigError for one that cannot be part of a file name."""
        category = category or self.default_category
        if not _CATEGORY_RE.match(category) or ".." in category:
            known = ", ".join(self.categories)
            raise ConfigError(f"{self.name}: invalid category {category!r}; expected a name such as {known}")
        return category


_AMAZON_2014 = "https://snap.stanford.edu/data/amazon/productGraph/categoryFiles"
_AMAZON_2023 = "https://mcauleylab.ucsd.edu/public_datasets/data/amazon_2023/raw"
_MOVIELENS = "https://files.grouplens.org/datasets/movielens"

SOURCES: dict[str, DatasetSource] = {
    "amazon-2014": DatasetSource(
        name="amazon-2014",
        files=(
            RemoteFile(_AMAZON_2014 + "/reviews_{category}_5.json.gz", "reviews_{category}_5.json.gz"),
            RemoteFile(_AMAZON_2014 + "/meta_{category}.json.gz", "meta_{category}.json.gz"),
        ),
        license=("Amazon product data (2014, 5-core reviews + metadata), J. McAuley, UCSD. No explicit "
                 "license: provided for research use; cite McAuley et al., SIGIR 2015 and He & McAuley, "
                 "WWW 2016. See https://jmcauley.ucsd.edu/data/amazon/"),
        default_category="Beauty",
        categories=("Beauty", "Sports_and_Outdoors", "Toys_and_Games", "Clothing_Shoes_and_Jewelry",
                    "Cell_Phones_and_Accessories", "Grocery_and_Gourmet_Food", "Home_and_Kitchen",
                    "Video_Games", "Office_Products", "Musical_Instruments"),
    ),
    "amazon-2023": DatasetSource(
        name="amazon-2023",
        files=(
            RemoteFile(_AMAZON_2023 + "/review_categories/{category}.jsonl.gz", "{category}.jsonl.gz"),
            RemoteFile(_AMAZON_2023 + "/meta_categories/meta_{category}.jsonl.gz",
                       "meta_{category}.jsonl.gz"),
        ),
        license=("Amazon Reviews'23, McAuley Lab, UCSD. For research use; cite Hou et al., 'Bridging "
                 "Language and Items for Retrieval and Recommendation' (2024). See https://amazon-reviews-2023.github.io/"),
        default_category="All_Beauty",
        categories=("All_Beauty", "Beauty_and_Personal_Care", "Sports_and_Outdoors", "Toys_and_Games",
                    "Video_Games", "Books", "Electronics", "Movies_and_TV", "Office_Products"),
    ),
    "movielens": DatasetSource(
        name="movielens",
        files=(RemoteFile(_MOVIELENS + "/{category}.zip", "{category}.zip"),),
        license=("MovieLens, GroupLens Research, University of Minnesota. Research use only: no "
                 "redistribution or commercial use without permission; cite Harper & Konstan, ACM TiiS 2015. "
                 "See the README inside the archive."),
        default_category="ml-100k",
        categories=("ml-100k", "ml-1m", "ml-20m", "ml-25m", "ml-latest-small"),
        extract=True,
    ),
}


def get_source(name: str) -> DatasetSource:
    """The source called `name`; ConfigError listing the known names otherwise."""
    try:
        return SOURCES[name]
    except KeyError:
        raise ConfigError(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(SOURCES))}") from None


def download(name: str, out: Path, category: str | None = None, base_url: str | None = None,
             progress: bool = True) -> list[Path]:
    """Download dataset `name` (one `category`) into the folder `out`.

    Returns the downloaded files and, for archives, the top-level paths they were extracted to (in `out`).
    Completed files are skipped, partial ones resumed.
    """
    source = get_source(name)
    out = Path(out)
    log.info("%s: %s", source.name, source.license)
    paths: list[Path] = []
    for url, file_name, sha256 in source.resolve(category, base_url):
        path = fetch(url, out / file_name, sha256=sha256, progress=progress)
        paths.append(path)
        if source.extract:
            paths.extend(extract_zip(path, out))
    return paths


def fetch(url: str, dest: Path, sha256: str | None = None, progress: bool = True) -> Path:
    """Download `url` to `dest` (resuming `dest.part`), verify or record its sha256, return `dest`."""
    dest = Path(dest)
    if _is_complete(dest, sha256):
        _report(f"[dim]up to date[/dim] {dest}", progress)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(dest)
    _download_to(url, part, dest.name, progress)
    digest = sha256_file(part)
    if sha256 is not None and digest != sha256.lower():
        part.unlink(missing_ok=True)
        raise MmgrError(f"checksum mismatch for {url}: expected sha256 {sha256.lower()}, got {digest}; "
                        "the bad download was deleted")
    os.replace(part, dest)
    if sha256 is None:
        _write_checksum(dest, digest)
        _report(f"sha256 {digest}  {dest.name} (no published checksum; recorded in {_checksum_path(dest)})",
                progress)
    return dest


def part_path(dest: Path) -> Path:
    """Where the unfinished download of `dest` is kept."""
    return dest.with_suffix(dest.suffix + ".part")


def _checksum_path(dest: Path) -> Path:
    return dest.with_suffix(dest.suffix + ".sha256")


def _write_checksum(dest: Path, digest: str) -> None:
    write_bytes_atomic(_checksum_path(dest), f"{digest}  {dest.name}\n".encode())


def _is_complete(dest: Path, sha256: str | None) -> bool:
    """True when `dest` exists and (where a checksum is known) matches it; records a missing digest."""
    if not dest.is_file():
        return False
    if sha256 is not None:
        if sha256_file(dest) == sha256.lower():
            return True
        log.warning("%s does not match its sha256; downloading it again", dest)
        return False
    if not _checksum_path(dest).exists():
        _write_checksum(dest, sha256_file(dest))
    return True


def _report(message: str, progress: bool) -> None:
    log.info(message)
    if progress:
        Console(stderr=True).print(message)


def _failure(url: str, part: Path, reason: object, check: str = "Check the connection or use") -> MmgrError:
    kept = f"; the partial file {part} is kept and the next run resumes it" if part.exists() else ""
    return MmgrError(f"download of {url} failed: {reason}. {check} --base-url to download from a "
                     f"mirror{kept}")


def _download_to(url: str, part: Path, label: str, progress: bool) -> None:
    """Fill `part` with the body of `url`, appending to what is there when the server honours Range."""
    try:
        opened = _request(url, part)
        if opened is None:  # the part already holds the whole file
            return
        response, offset, total = opened
        with response, _progress_bar(progress) as bar, open(part, "ab" if offset else "wb") as fh:
            task = bar.add_task(label, total=total, completed=offset)
            received = _copy(response, fh, lambda n: bar.advance(task, n))
    except urllib.error.HTTPError as exc:
        raise _failure(url, part, f"HTTP {exc.code} {exc.reason}", "Use") from exc
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise _failure(url, part, getattr(exc, "reason", None) or exc) from exc
    if total is not None and offset + received < total:
        raise _failure(url, part, f"connection closed after {offset + received} of {total} bytes")


def _request(url: str, part: Path) -> tuple[http.client.HTTPResponse, int, int | None] | None:
    """Open `url`, asking only for what `part` lacks when it exists.

    Returns (response, offset, total): `offset` is how many bytes of `part` the body continues (0: start
    over), `total` the full size when the server says it; None when `part` is already complete.
    """
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        if exc.code != 416 or not offset:
            raise
        match = _UNSATISFIED_RANGE_RE.search(exc.headers.get("Content-Range", ""))
        exc.close()
        if match and int(match.group(1)) == offset:
            return None
        part.unlink()  # longer than the file or unknown: start over
        return _request(url, part)
    if response.status != 206:  # 200: the server ignored Range, the body is the whole file
        return response, 0, _int_header(response, "Content-Length")
    match = _CONTENT_RANGE_RE.search(response.headers.get("Content-Range", ""))
    if not offset or not match or int(match.group(1)) != offset:  # not the range asked for: start over
        response.close()
        part.unlink(missing_ok=True)
        return _request(url, part)
    length = _int_header(response, "Content-Length")
    total = int(match.group(3)) if match.group(3).isdigit() else None
    return response, offset, total if total is not None else (offset + length if length is not None else None)


def _int_header(response: http.client.HTTPResponse, name: str) -> int | None:
    value = response.headers.get(name)
    return int(value) if value and value.isdigit() else None


def _copy(response: http.client.HTTPResponse, fh: BinaryIO, advance: Callable[[int], object]) -> int:
    """Copy the response body into `fh` in chunks; return the number of bytes copied."""
    received = 0
    while block := response.read(CHUNK):
        fh.write(block)
        received += len(block)
        advance(len(block))
    return received


def _progress_bar(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not enabled,
    )


def extract_zip(archive: Path, out: Path) -> list[Path]:
    """Unzip `archive` into `out` after checking every member stays inside it; return the top-level paths.

    Members with an absolute path, a drive letter or a `..` component are rejected (MmgrError) before
    anything is written.
    """
    out = Path(out)
    try:
        with zipfile.ZipFile(archive) as zf:
            names = zf.namelist()
            for member in names:
                _check_member(archive, member)
            zf.extractall(out)
    except zipfile.BadZipFile as exc:
        raise MmgrError(f"{archive}: not a valid zip archive ({exc}); delete it and download again") from exc
    tops = sorted({PurePosixPath(name.replace("\\", "/")).parts[0] for name in names if name.strip("/")})
    return [out / top for top in tops]


def _check_member(archive: Path, member: str) -> None:
    posix = PurePosixPath(member.replace("\\", "/"))
    windows = PureWindowsPath(member)
    if posix.is_absolute() or windows.is_absolute() or windows.drive or ".." in posix.parts:
        raise MmgrError(f"{archive}: refusing to extract unsafe member {member!r} (absolute path or '..')")
