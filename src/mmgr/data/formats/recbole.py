"""RecBole atomic files: `X.inter` (+ optional `X.item`, `X.user`), tab-separated with typed headers such as
`item_id:token`, plus an optional image folder whose files are named by item id (`<item_id>.jpg`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from mmgr.data.builder import DatasetBuilder, ItemRecord
from mmgr.data.formats import READERS
from mmgr.data.images import images_by_stem
from mmgr.errors import DataError

TITLE_FIELDS = ("title", "movie_title", "item_name", "name")
CATEGORY_FIELDS = ("class", "categories", "genre", "category")
YEAR_FIELDS = ("release_year", "year")


@READERS.register("recbole")
def read_recbole(path: Path, items: Path | None = None, images: Path | None = None) -> DatasetBuilder:
    inter_file = path if path.is_file() else _single(path, ".inter")
    item_file = items or inter_file.with_suffix(".item")
    image_folder = images or _default_images(inter_file.parent)
    builder = DatasetBuilder(inter_file.stem)
    if item_file.is_file():
        pictures = images_by_stem(image_folder) if image_folder else {}
        for line, row in _rows(item_file, required=("item_id",)):
            image = pictures.get(row["item_id"])
            builder.add_item(_record(row, str(image) if image else None), item_file, line)
    for line, row in _rows(inter_file, required=("user_id", "item_id")):
        builder.add_interaction(row["user_id"], row["item_id"], _timestamp(row, inter_file, line))
    return builder


def _single(folder: Path, suffix: str) -> Path:
    found = sorted(folder.glob(f"*{suffix}")) if folder.is_dir() else []
    if len(found) != 1:
        raise DataError(f"expected exactly one *{suffix} file, found {[p.name for p in found]}", folder)
    return found[0]


def _default_images(folder: Path) -> Path | None:
    for name in ("posters", "images"):
        if (folder / name).is_dir():
            return folder / name
    return None


def _rows(path: Path, required: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield (line number, {field: value}) with the `:type` suffix stripped from header names."""
    with open(path, encoding="utf-8") as fh:
        header = [h.split(":")[0] for h in fh.readline().rstrip("\n").split("\t")]
        for field in required:
            if field not in header:
                raise DataError(f"missing column (header is {header})", path, 1, field)
        for line_no, line in enumerate(fh, start=2):
            if not line.strip():
                continue
            values = line.rstrip("\n").split("\t")
            if len(values) != len(header):
                raise DataError(f"expected {len(header)} tab-separated fields, found {len(values)}", path,
                                line_no)
            row = dict(zip(header, values, strict=True))
            for field in required:
                if not row[field]:
                    raise DataError("empty value", path, line_no, field)
            yield line_no, row


def _timestamp(row: dict[str, str], path: Path, line: int) -> int | None:
    value = row.get("timestamp")
    if value is None:
        return None
    try:
        return int(float(value))
    except ValueError:
        raise DataError(f"not a number: {value!r}", path, line, "timestamp") from None


def _record(row: dict[str, str], image: str | None) -> ItemRecord:
    title = next((row[f] for f in TITLE_FIELDS if row.get(f)), "")
    year = next((row[f] for f in YEAR_FIELDS if row.get(f)), "")
    categories = next((row[f].split() for f in CATEGORY_FIELDS if row.get(f)), [])
    return ItemRecord(row["item_id"], title=f"{title} ({year})" if title and year else title,
                      categories=categories, image=image)
