"""Generic tables: interactions (`user_id`, `item_id`, optional integer `timestamp`) and items (`item_id` and
any of `title`, `description`, `brand`, `categories`, `image`), each a CSV or a Parquet file.

PATH is the interactions file, or a folder holding `interactions.csv|parquet` and `items.csv|parquet`; the
`items` argument names the items file explicitly. `categories` is a `|`-separated string (or, in Parquet, a
list of strings). `image` is a URL, an absolute path, or a path relative to the `images` folder when one is
given (else to the items file's folder); empty means no image. Without an `image` column, images are matched
by item id in the `images` folder (`<item id>.<ext>`).

Locations in errors: CSV line numbers count the header as line 1; Parquet errors give the 1-based row.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from mmgr.data.builder import DatasetBuilder, ItemRecord
from mmgr.data.formats import READERS
from mmgr.data.formats.textio import check_int64, csv_records
from mmgr.data.images import images_by_stem, is_url
from mmgr.errors import DataError

INTERACTIONS_NAMES = ("interactions.csv", "interactions.parquet")
ITEMS_NAMES = ("items.csv", "items.parquet")
ITEM_TEXT = ("title", "description", "brand")
ITEM_COLUMNS = (*ITEM_TEXT, "categories", "image")
PARQUET_SUFFIXES = (".parquet", ".pq")
TIME_UNITS = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}

Row = dict[str, Any]


@READERS.register("generic")
def read_generic(path: Path, items: Path | None = None, images: Path | None = None) -> DatasetBuilder:
    """Catalog from the items table (in its row order), then every interaction."""
    interactions_file, items_file = locate(Path(path), Path(items) if items else None)
    builder = DatasetBuilder(interactions_file.parent.name)
    builder.source = interactions_file
    _read_items(items_file, Path(images) if images else None, builder)
    _read_interactions(interactions_file, builder)
    return builder


def locate(path: Path, items: Path | None = None) -> tuple[Path, Path]:
    """(interactions file, items file) from a folder or an interactions file."""
    if path.is_dir():
        interactions = _one_of(path, INTERACTIONS_NAMES)
        if interactions is None:
            raise DataError(f"no interactions table here (expected {' or '.join(INTERACTIONS_NAMES)})", path)
    elif path.is_file():
        interactions = path
    else:
        raise DataError("not found", path)
    folder = interactions.parent
    items_file = items or _one_of(folder, ITEMS_NAMES)
    if items_file is None:
        raise DataError(f"no items table ({' or '.join(ITEMS_NAMES)}) next to the interactions; "
                        "pass it as the items file", folder)
    if not items_file.is_file():
        raise DataError("not found", items_file)
    for table in (interactions, items_file):
        if table.suffix.lower() not in (".csv", *PARQUET_SUFFIXES):
            raise DataError("unsupported table format (expected .csv or .parquet)", table)
    return interactions, items_file


def _one_of(folder: Path, names: tuple[str, ...]) -> Path | None:
    found = [folder / name for name in names if (folder / name).is_file()]
    if len(found) > 1:
        raise DataError(f"both {' and '.join(p.name for p in found)} exist; pass the one to use", folder)
    return found[0] if found else None


# --- reading rows ---------------------------------------------------------------------------------

def _is_parquet(path: Path) -> bool:
    return path.suffix.lower() in PARQUET_SUFFIXES


def _error(message: str, path: Path, line: int, field: str | None) -> DataError:
    """A located error; Parquet locations are rows, and the message says so."""
    return DataError(f"row {line}: {message}" if _is_parquet(path) else message, path, line, field)


def open_table(path: Path, required: tuple[str, ...], optional: tuple[str, ...]
               ) -> tuple[list[str], Iterator[tuple[int, Row]]]:
    """Check the header, then stream rows as (CSV line / Parquet row, 1-based; {column: value})."""
    header = _parquet_header(path) if _is_parquet(path) else _csv_header(path)
    for column in required:
        if column not in header:
            raise DataError(f"missing column (columns are {header})", path, 1, column)
    present = [c for c in (*required, *optional) if c in header]
    rows = _parquet_rows(path, present) if _is_parquet(path) else _csv_rows(path, present)
    return present, rows


def _csv_header(path: Path) -> list[str]:
    first = next(csv_records(path), None)
    if first is None:
        raise DataError("empty file (expected a header row)", path, 1)
    header = [name.strip() for name in first[1]]
    repeated = [name for name in header if header.count(name) > 1]
    if repeated:
        raise DataError(f"column {repeated[0]!r} appears twice in the header", path, 1, repeated[0])
    return header


def _csv_rows(path: Path, columns: list[str]) -> Iterator[tuple[int, Row]]:
    records = csv_records(path)
    _, first = next(records)
    header = [name.strip() for name in first]
    index = {c: header.index(c) for c in columns}
    for line, fields in records:
        if len(fields) != len(header):
            missing = header[len(fields)] if len(fields) < len(header) else None
            raise DataError(f"expected {len(header)} comma-separated fields (the header's), found {len(fields)}",
                            path, line, missing)
        yield line, {c: fields[i] for c, i in index.items()}


def _parquet_header(path: Path) -> list[str]:
    try:
        return list(pq.read_schema(path).names)
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"not a readable Parquet file ({exc})", path) from None


def _parquet_rows(path: Path, columns: list[str]) -> Iterator[tuple[int, Row]]:
    row = 0
    try:
        for batch in pq.ParquetFile(path).iter_batches(columns=columns, batch_size=65_536):
            data = {name: _epoch_seconds(batch.column(name)).to_pylist() for name in batch.schema.names}
            for i in range(batch.num_rows):
                row += 1
                yield row, {name: values[i] for name, values in data.items()}
    except (OSError, pa.ArrowException) as exc:
        raise _error(f"cannot read ({exc.__class__.__name__}: {exc})", path, row + 1, None) from None


def _epoch_seconds(column: pa.Array) -> pa.Array:
    """Parquet timestamp columns become integer epoch seconds; other columns are returned as they are."""
    if not pa.types.is_timestamp(column.type):
        return column
    raw = column.cast(pa.int64()).to_pylist()
    unit = TIME_UNITS[column.type.unit]
    return pa.array([None if v is None else v // unit for v in raw], pa.int64())


# --- values ---------------------------------------------------------------------------------------

def _id(value: Any, path: Path, line: int, field: str) -> str:
    text = "" if value is None else str(value).strip()
    if not text:
        raise _error("empty value", path, line, field)
    return text


def _timestamp(value: Any, path: Path, line: int) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return check_int64(value, path, line, "timestamp")
    if isinstance(value, str):
        text = value.strip()
        try:
            return check_int64(int(text), path, line, "timestamp")
        except ValueError:
            with contextlib.suppress(ValueError):
                value = float(text)
    if isinstance(value, float) and value.is_integer():
        return check_int64(int(value), path, line, "timestamp")
    raise _error(f"bad timestamp {value!r} (expected an integer)", path, line, "timestamp")


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return " ".join(str(v).strip() for v in value if v is not None and str(v).strip())
    return str(value).strip()


def _categories(value: Any) -> list[str]:
    """`a|b|c` or a list of strings -> stripped, non-empty, first occurrence kept."""
    if value is None:
        return []
    parts = value if isinstance(value, list) else str(value).split("|")
    return list(dict.fromkeys(p for p in (str(v).strip() for v in parts if v is not None) if p))


def _image(value: Any, base: Path) -> str | None:
    ref = "" if value is None else str(value).strip()
    if not ref:
        return None
    if is_url(ref) or Path(ref).is_absolute():
        return ref
    return str(base / ref)


# --- tables ---------------------------------------------------------------------------------------

def _read_items(path: Path, images: Path | None, builder: DatasetBuilder) -> None:
    present, rows = open_table(path, ("item_id",), ITEM_COLUMNS)
    by_stem = images_by_stem(images) if images is not None and "image" not in present else None
    base = images if images is not None else path.parent
    for line, row in rows:
        item_id = _id(row["item_id"], path, line, "item_id")
        if by_stem is not None:
            image = str(by_stem[item_id]) if item_id in by_stem else None
        else:
            image = _image(row.get("image"), base)
        builder.add_item(ItemRecord(
            item_id,
            **{field: _text(row.get(field)) for field in ITEM_TEXT},
            categories=_categories(row.get("categories")),
            image=image,
        ), path, line)


def _read_interactions(path: Path, builder: DatasetBuilder) -> None:
    present, rows = open_table(path, ("user_id", "item_id"), ("timestamp",))
    timed = "timestamp" in present
    for line, row in rows:
        user = _id(row["user_id"], path, line, "user_id")
        item = _id(row["item_id"], path, line, "item_id")
        builder.add_interaction(user, item, _timestamp(row["timestamp"], path, line) if timed else None)
