"""Raw Amazon Reviews dumps from the McAuley lab.

- `amazon2014`: `reviews_<Cat>_5.json.gz` (JSON lines: `reviewerID`, `asin`, `unixReviewTime` in seconds) and
  `meta_<Cat>.json.gz` (one Python dict literal per line: `asin`, `title`, `description`, `brand`,
  `categories` as a list of lists, `imUrl`).
- `amazon2023`: `<Cat>.jsonl.gz` (JSON lines: `user_id`, `parent_asin`, `timestamp` in milliseconds) and
  `meta_<Cat>.jsonl.gz` (JSON lines: `parent_asin`, `title`, `description` list, `store`, `categories`,
  `main_category`, `images` list of `{large, hi_res, thumb}`).

PATH is the folder holding one category's pair of files, or either file of the pair; `items` names the meta
file explicitly; `images` is a folder of local images named `<item id>.<ext>` (used instead of the meta URLs).
Files may be gzip or plain text (detected from the content) and are streamed line by line. Reviews are read
first so that metadata of never-reviewed items is counted and skipped instead of being held in memory.
Timestamps keep the unit of the source (seconds for 2014, milliseconds for 2023).
"""

from __future__ import annotations

import ast
import gzip
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from mmgr.data.builder import UNUSED_ITEMS, DatasetBuilder, ItemRecord
from mmgr.data.formats import READERS
from mmgr.data.formats.textio import check_int64, check_no_nul, parse_json_line
from mmgr.data.images import images_by_stem, is_url
from mmgr.data.problems import Problems
from mmgr.errors import DataError

BAD_FIELD = "meta fields with an unexpected type or value (field ignored)"
BLANK = "blank lines (skipped)"


@dataclass(frozen=True)
class Layout:
    """How one release names its files and fields."""

    release: str
    reviews: re.Pattern[str]  # full-match on a reviews file name; group `cat` is the category
    meta: re.Pattern[str]  # full-match on a meta file name; group `cat`
    review_names: tuple[str, ...]  # `{}` = category, most preferred first
    meta_names: tuple[str, ...]
    user_key: str
    item_key: str
    time_key: str
    time_per_second: int = 1  # timestamps are stored in seconds; 2023 files count milliseconds


AMAZON2014 = Layout(
    "Amazon 2014",
    re.compile(r"reviews_(?P<cat>.+?)(?:_5)?\.json(?:\.gz)?"),
    re.compile(r"meta_(?P<cat>.+)\.json(?:\.gz)?"),
    ("reviews_{}_5.json.gz", "reviews_{}_5.json", "reviews_{}.json.gz", "reviews_{}.json"),
    ("meta_{}.json.gz", "meta_{}.json"),
    "reviewerID", "asin", "unixReviewTime",
)
AMAZON2023 = Layout(
    "Amazon 2023",
    re.compile(r"(?!meta_)(?P<cat>.+)\.jsonl(?:\.gz)?"),
    re.compile(r"meta_(?P<cat>.+)\.jsonl(?:\.gz)?"),
    ("{}.jsonl.gz", "{}.jsonl"),
    ("meta_{}.jsonl.gz", "meta_{}.jsonl"),
    "user_id", "parent_asin", "timestamp", time_per_second=1000,
)


@dataclass
class Where:
    """The meta line being read, so a skipped optional field is counted with its location."""

    problems: Problems
    path: Path
    line: int

    def skip(self, field: str, value: Any) -> None:
        self.problems.add(BAD_FIELD, f"unexpected {type(value).__name__} value {_short(value)}", self.path,
                          self.line, field)


RecordMaker = Callable[[dict[str, Any], str, Where], ItemRecord]


@READERS.register("amazon2014")
def read_amazon2014(path: Path, items: Path | None = None, images: Path | None = None) -> DatasetBuilder:
    """Amazon Reviews 2014: item id = `asin`, user id = `reviewerID`, timestamp = `unixReviewTime` (s)."""
    return _read(AMAZON2014, Path(path), items, images, _parse_literal, _record_2014)


@READERS.register("amazon2023")
def read_amazon2023(path: Path, items: Path | None = None, images: Path | None = None) -> DatasetBuilder:
    """Amazon Reviews 2023: item id = `parent_asin`, user id = `user_id`, timestamp = `timestamp` (ms)."""
    return _read(AMAZON2023, Path(path), items, images, _parse_json, _record_2023)


def _read(layout: Layout, path: Path, items: Path | None, images: Path | None,
          parse_meta: Callable[[str, Path, int], dict[str, Any]], make_record: RecordMaker) -> DatasetBuilder:
    reviews_file, meta_file, name = locate(layout, path, Path(items) if items else None)
    builder = DatasetBuilder(name)
    builder.source = reviews_file
    reviewed = _read_reviews(layout, reviews_file, builder)
    local = images_by_stem(Path(images)) if images else None
    _read_meta(layout, meta_file, builder, reviewed, parse_meta, make_record, local)
    return builder


# --- files ----------------------------------------------------------------------------------------

def locate(layout: Layout, path: Path, items: Path | None = None) -> tuple[Path, Path, str]:
    """(reviews file, meta file, category) from a folder, a reviews file or a meta file."""
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.is_file() and layout.reviews.fullmatch(p.name))
        if not found:
            raise DataError(f"no {layout.release} reviews file here (expected "
                            f"{layout.review_names[0].format('<Category>')})", path)
        if len(found) > 1:
            raise DataError(f"several reviews files ({', '.join(p.name for p in found)}); pass one of them "
                            "as the input path", path)
        reviews = found[0]
    elif not path.is_file():
        raise DataError("not found", path)
    elif match := layout.meta.fullmatch(path.name):
        items = items or path
        reviews = _first_existing(path.parent, layout.review_names, match["cat"])
        if reviews is None:
            names = " or ".join(n.format(match["cat"]) for n in layout.review_names)
            raise DataError(f"this is a meta file and no reviews file ({names}) is next to it", path)
    else:
        reviews = path
    match = layout.reviews.fullmatch(reviews.name)
    category = match["cat"] if match else reviews.name.split(".")[0]
    meta = items or (_first_existing(reviews.parent, layout.meta_names, category) if match else None)
    if meta is None:
        names = " or ".join(n.format(category) for n in layout.meta_names)
        raise DataError(f"no metadata file ({names}) next to the reviews file; pass it as the items file",
                        reviews)
    if not meta.is_file():
        raise DataError("not found", meta)
    return reviews, meta, category


def _first_existing(folder: Path, names: tuple[str, ...], category: str) -> Path | None:
    for name in names:
        candidate = folder / name.format(category)
        if candidate.is_file():
            return candidate
    return None


def _open_text(path: Path) -> IO[str]:
    with open(path, "rb") as fh:
        gzipped = fh.read(2) == b"\x1f\x8b"
    if gzipped:
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def iter_lines(path: Path, problems: Problems) -> Iterator[tuple[int, str]]:
    """(1-based line number, stripped text) of a plain or gzip file, streamed; blank lines are counted."""
    line_no = 0
    try:
        with _open_text(path) as fh:
            for line_no, text in enumerate(fh, start=1):
                text = (text.removeprefix("\ufeff") if line_no == 1 else text).strip()
                if text:
                    check_no_nul(text, path, line_no)
                    yield line_no, text
                else:
                    problems.add(BLANK, "blank line", path, line_no)
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read ({exc.__class__.__name__}: {exc})", path, line_no + 1) from None


# --- reviews --------------------------------------------------------------------------------------

def _read_reviews(layout: Layout, path: Path, builder: DatasetBuilder) -> set[str]:
    """Add every review as an interaction; returns the reviewed item ids."""
    reviewed: set[str] = set()
    for line_no, text in iter_lines(path, builder.problems):
        record = _parse_json(text, path, line_no)
        user = _required_id(record, layout.user_key, path, line_no)
        item = _required_id(record, layout.item_key, path, line_no)
        timestamp = _required_int(record, layout.time_key, path, line_no) // layout.time_per_second
        builder.add_interaction(user, item, timestamp)
        reviewed.add(item)
    return reviewed


def _parse_json(text: str, path: Path, line: int) -> dict[str, Any]:
    return _expect_dict(parse_json_line(text, path, line), path, line)


def _parse_literal(text: str, path: Path, line: int) -> dict[str, Any]:
    """A Python dict literal (the 2014 meta format), parsed safely; strict JSON is accepted as well."""
    try:
        tree = ast.parse(text, mode="eval")
        _no_duplicate_keys(tree.body, path, line)
        record = ast.literal_eval(tree)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError) as exc:
        try:
            record = json.loads(text)
        except json.JSONDecodeError:
            raise DataError(f"not a Python dict literal ({exc.__class__.__name__}: {exc})", path,
                            line) from None
        record = parse_json_line(text, path, line)  # valid JSON: the strict reading (duplicate keys, NaN)
    return _expect_dict(record, path, line)


def _no_duplicate_keys(node: ast.AST, path: Path, line: int) -> None:
    """A literal's dicts name each (constant) key once: a repeated key would silently drop a value."""
    for child in ast.walk(node):
        if isinstance(child, ast.Dict):
            keys = [k.value for k in child.keys if isinstance(k, ast.Constant)]
            repeated = next((k for k in keys if keys.count(k) > 1), None)
            if repeated is not None:
                raise DataError(f"duplicate key {repeated!r} in a dict literal", path, line, str(repeated))


def _expect_dict(record: Any, path: Path, line: int) -> dict[str, Any]:
    if not isinstance(record, dict):
        raise DataError(f"expected an object, got {type(record).__name__}", path, line)
    return record


def _required_id(record: dict[str, Any], key: str, path: Path, line: int) -> str:
    value = record.get(key)
    if value is None:
        raise DataError("missing", path, line, key)
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"expected a non-empty string, got {_short(value)}", path, line, key)
    return value.strip()


def _required_int(record: dict[str, Any], key: str, path: Path, line: int) -> int:
    value = record.get(key)
    if value is None:
        raise DataError("missing", path, line, key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise DataError(f"expected an integer timestamp, got {_short(value)}", path, line, key)
    return check_int64(value, path, line, key)


# --- meta -----------------------------------------------------------------------------------------

def _read_meta(layout: Layout, path: Path, builder: DatasetBuilder, reviewed: set[str],
               parse: Callable[[str, Path, int], dict[str, Any]], make_record: RecordMaker,
               local_images: dict[str, Path] | None) -> None:
    """Add the catalog in file order; entries for never-reviewed items are counted and skipped."""
    unreviewed, first_unreviewed = 0, ""
    for line_no, text in iter_lines(path, builder.problems):
        record = parse(text, path, line_no)
        item_id = _required_id(record, layout.item_key, path, line_no)
        if item_id not in reviewed:
            unreviewed += 1
            first_unreviewed = first_unreviewed or f"{path}:{line_no}: item {item_id!r}"
            continue
        item = make_record(record, item_id, Where(builder.problems, path, line_no))
        if local_images is not None:
            local = local_images.get(item_id)
            item.image = str(local) if local is not None else None
        builder.add_item(item, path, line_no, layout.item_key)
    if unreviewed:
        builder.problems.add(UNUSED_ITEMS, first_unreviewed, count=unreviewed)


def _record_2014(record: dict[str, Any], item_id: str, where: Where) -> ItemRecord:
    return ItemRecord(
        item_id,
        title=_text(record, "title", where),
        description=_text(record, "description", where),
        brand=_text(record, "brand", where),
        categories=_categories(record, "categories", where),
        image=_url(record.get("imUrl"), "imUrl", where),
    )


def _record_2023(record: dict[str, Any], item_id: str, where: Where) -> ItemRecord:
    categories = _categories(record, "categories", where)
    main = _text(record, "main_category", where)
    return ItemRecord(
        item_id,
        title=_text(record, "title", where),
        description=_text(record, "description", where),
        brand=_text(record, "store", where),
        categories=categories or ([main] if main else []),
        image=_first_image(record.get("images"), where),
    )


def _text(record: dict[str, Any], key: str, where: Where) -> str:
    """A string, or a list of strings joined with spaces; anything else is counted and ignored."""
    value = record.get(key)
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return " ".join(v.strip() for v in value if v.strip())
    where.skip(key, value)
    return ""


def _categories(record: dict[str, Any], key: str, where: Where) -> list[str]:
    """Flatten a list of category paths (or a flat list), dropping repeats and keeping the first order."""
    value = record.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        where.skip(key, value)
        return []
    out: list[str] = []
    for entry in value:
        for part in entry if isinstance(entry, list) else [entry]:
            if not isinstance(part, str):
                where.skip(key, value)
                return []
            if part.strip():
                out.append(part.strip())
    return list(dict.fromkeys(out))


def _url(value: Any, field: str, where: Where) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, str) and is_url(value.strip()):
        return value.strip()
    where.skip(field, value)
    return None


def _first_image(value: Any, where: Where) -> str | None:
    """The first image's `large` (else `hi_res`) URL; the columnar `{large: [...], ...}` layout works too."""
    if value is None or value == [] or value == {}:
        return None
    if isinstance(value, list) and isinstance(value[0], dict):
        first = value[0]
    elif isinstance(value, dict) and all(isinstance(v, list) for v in value.values()):
        first = {k: v[0] for k, v in value.items() if v}
    else:
        where.skip("images", value)
        return None
    for key in ("large", "hi_res"):
        url = first.get(key)
        if isinstance(url, str) and is_url(url):
            return url
    where.skip("images", value)
    return None


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
