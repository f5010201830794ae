"""P5 / S3-Rec format: `sequential_data.txt` (`user item item ...`, 1-based ids) + `datamaps.json`,
with an optional `items.csv` (`asin,title`) next to it or in its parent folder."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from mmgr.data.builder import DatasetBuilder, ItemRecord
from mmgr.data.formats import READERS
from mmgr.errors import DataError


@READERS.register("p5")
def read_p5(path: Path, items: Path | None = None, images: Path | None = None) -> DatasetBuilder:
    folder = path if path.is_dir() else path.parent
    if (folder / "p5").is_dir() and not (folder / "sequential_data.txt").exists():
        folder = folder / "p5"
    sequences_file, datamaps_file = folder / "sequential_data.txt", folder / "datamaps.json"
    for required in (sequences_file, datamaps_file):
        if not required.is_file():
            raise DataError("missing (a P5 folder holds sequential_data.txt and datamaps.json)", required)
    id2item = _read_datamaps(datamaps_file)
    titles = _read_titles(items or _find_items_csv(folder))
    builder = DatasetBuilder(folder.parent.name if folder.name == "p5" else folder.name)
    for _, asin in sorted(id2item.items(), key=lambda kv: int(kv[0])):
        builder.add_item(ItemRecord(asin, title=titles.get(asin, "")), datamaps_file)
    if titles:
        untitled = sum(1 for asin in id2item.values() if not titles.get(asin))
        if untitled:
            builder.problems.add("items with an empty title (text modality masked)", count=untitled)
    _read_sequences(sequences_file, id2item, builder)
    return builder


def _read_datamaps(path: Path) -> dict[str, str]:
    try:
        maps = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"not valid JSON: {exc.msg}", path, exc.lineno) from None
    if not isinstance(maps, dict) or not isinstance(maps.get("id2item"), dict):
        raise DataError("expected an object with an 'id2item' mapping", path, field="id2item")
    bad = [k for k in maps["id2item"] if not str(k).isdigit()]
    if bad:
        raise DataError(f"item id {bad[0]!r} is not a positive integer", path, field="id2item")
    return {str(k): str(v) for k, v in maps["id2item"].items()}


def _find_items_csv(folder: Path) -> Path | None:
    for candidate in (folder / "items.csv", folder.parent / "items.csv"):
        if candidate.is_file():
            return candidate
    return None


def _read_titles(path: Path | None) -> dict[str, str]:
    if path is None:
        return {}
    titles: dict[str, str] = {}
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        for field in ("asin", "title"):
            if field not in (reader.fieldnames or []):
                raise DataError(f"missing column (header is {reader.fieldnames})", path, 1, field)
        for row in reader:
            line = reader.line_num
            if not row["asin"]:
                raise DataError("empty value", path, line, "asin")
            if row["asin"] in titles:
                raise DataError(f"duplicate asin {row['asin']!r}", path, line, "asin")
            titles[row["asin"]] = (row["title"] or "").strip()
    return titles


def _read_sequences(path: Path, id2item: dict[str, str], builder: DatasetBuilder) -> None:
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            fields = line.split()
            if not fields:
                builder.problems.add("blank lines (skipped)", "blank line", path, line_no)
                continue
            user, items = fields[0], fields[1:]
            builder.add_user(user, path, line_no)
            for position, p5_id in enumerate(items, start=2):
                asin = id2item.get(p5_id)
                if asin is None:
                    raise DataError(f"unknown item id {p5_id!r} (not in datamaps.json id2item)", path, line_no,
                                    f"column {position}")
                builder.add_interaction(user, asin, None)
