"""Which reader a PATH is for, from its file names alone (`mmgr data import PATH` without `--format`).

Exactly one format must match; none or several is an error that lists what each format expects."""

from __future__ import annotations

import re
from pathlib import Path

from mmgr.data.formats.amazon import AMAZON2014, AMAZON2023
from mmgr.errors import DataError

EXPECTED = {
    "p5": "sequential_data.txt or sequential.txt + datamaps.json (in PATH or PATH/p5)",
    "lcrec": "X.inter.json (+ X.item.json, X.item2id, X.user2id)",
    "recbole": "X.inter, or X.train.inter / X.valid.inter / X.test.inter",
    "amazon2014": "reviews_<Category>_5.json.gz + meta_<Category>.json.gz",
    "amazon2023": "<Category>.jsonl.gz + meta_<Category>.jsonl.gz",
    "generic": "interactions.csv|parquet + items.csv|parquet",
}
P5_NAMES = ("sequential_data.txt", "sequential.txt")
GENERIC_NAMES = re.compile(r"interactions\.(csv|parquet|pq)")


def detect_format(path: Path) -> str:
    """The one format whose files PATH is or holds; a `DataError` listing the formats otherwise."""
    path = Path(path)
    if not path.exists():
        raise DataError("not found", path)
    found = _of_file(path) if path.is_file() else _of_folder(path)
    if len(found) == 1:
        return found[0]
    listing = "; ".join(f"{name}: {files}" for name, files in EXPECTED.items())
    if not found:
        raise DataError(f"cannot tell the data format from the file names; pass --format (one of {listing}; or "
                        "--format synthetic for the built-in world, without PATH)", path)
    matched = "; ".join(f"{name} (expects {EXPECTED[name]})" for name in found)
    raise DataError(f"files of several formats are here: {matched}; pass --format to choose one", path)


def formats_of_name(name: str) -> list[str]:
    """Formats whose files can be called `name`."""
    out = []
    if name in P5_NAMES:
        out.append("p5")
    if name.endswith(".inter.json"):
        out.append("lcrec")
    if name.endswith(".inter"):
        out.append("recbole")
    if AMAZON2014.reviews.fullmatch(name) or AMAZON2014.meta.fullmatch(name):
        out.append("amazon2014")
    if AMAZON2023.reviews.fullmatch(name) or AMAZON2023.meta.fullmatch(name):
        out.append("amazon2023")
    return out


def _of_file(path: Path) -> list[str]:
    found = formats_of_name(path.name)
    if not found and path.suffix.lower() in (".csv", ".parquet", ".pq"):
        found.append("generic")       # the generic reader takes any interactions table as PATH
    return found


def _of_folder(folder: Path) -> list[str]:
    names = [p.name for p in folder.iterdir() if p.is_file()]
    found = {fmt for name in names for fmt in formats_of_name(name) if fmt not in ("amazon2014", "amazon2023")}
    for layout, fmt in ((AMAZON2014, "amazon2014"), (AMAZON2023, "amazon2023")):
        if any(layout.reviews.fullmatch(n) for n in names if not layout.meta.fullmatch(n)):
            found.add(fmt)
    if any(GENERIC_NAMES.fullmatch(n) for n in names):
        found.add("generic")
    if not found and (folder / "p5").is_dir() and any((folder / "p5" / n).is_file() for n in P5_NAMES):
        found.add("p5")
    return sorted(found)
