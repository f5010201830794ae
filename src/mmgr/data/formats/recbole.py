"""RecBole atomic files, tab-separated with typed headers such as `item_id:token`.

Two layouts:
- interactions: `X.inter` with `user_id`, `item_id` and optional `timestamp` (one interaction per line), plus an
  optional `X.item` and an image folder whose files are named by item id (`<item_id>.jpg`);
- benchmark splits (as RecBole and UniSRec publish them): `X.train.inter`, `X.valid.inter`, `X.test.inter`, each
  line `user_id`, `item_id_list:token_seq` (the history, oldest first, possibly truncated to its last N items) and
  `item_id` (the target). A user's full sequence is rebuilt from the earliest history plus every target in order
  (train, then valid, then test), which is the test history + test target when no history was truncated; every
  row's history must agree with it (an error names the file and line where one does not). Within a file, a user's
  rows may come in either direction (UniSRec writes the longest history first). Split files without a history
  column (RecBole's `benchmark_filename` layout) are read as interactions, train then valid then test. Item text
  may come from `X.item` or UniSRec's `X.text` (`item_id`, `text`); `X.item2index` / `X.user2index`
  (`RAW_ID<TAB>INDEX`) give the real ids.

Any file with a history column is read as a split file; it is never read as plain interactions.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mmgr.data.builder import DatasetBuilder, ItemRecord
from mmgr.data.formats import READERS
from mmgr.data.formats.idmaps import IdMap, companion, read_tab_map
from mmgr.data.formats.textio import check_int64, check_no_nul, iter_lines
from mmgr.data.images import images_by_stem
from mmgr.errors import DataError

TITLE_FIELDS = ("title", "movie_title", "item_name", "name", "text")
CATEGORY_FIELDS = ("class", "categories", "genre", "category")
YEAR_FIELDS = ("release_year", "year")
SPLITS = ("train", "valid", "test")
HISTORY = "item_id_list"


@READERS.register("recbole")
def read_recbole(path: Path, items: Path | None = None, images: Path | None = None) -> DatasetBuilder:
    path = Path(path)
    files = _inter_files(path)
    first = files[0]
    stem = _stem(first)
    item_file = Path(items) if items else _item_file(first.parent, stem)
    image_folder = Path(images) if images else _default_images(first.parent)
    builder = DatasetBuilder(stem)
    builder.source = files[-1]
    with_history = [f for f in files if HISTORY in _header(f)[0]]
    if with_history:
        lacking = [f for f in files if f not in with_history]
        if lacking:
            raise DataError(f"no {HISTORY} column, unlike {with_history[0].name}: the split files must share one "
                            "layout", lacking[0], 1)
        _read_splits(files, stem, item_file, image_folder, builder)
        return builder
    _add_items(item_file, image_folder, builder, None)
    for inter_file in files:  # one interaction per line (RecBole's benchmark files split this layout too)
        for line, row in _rows(inter_file, required=("user_id", "item_id")):
            builder.add_interaction(row["user_id"], row["item_id"], _timestamp(row, inter_file, line))
    return builder


# --- files ----------------------------------------------------------------------------------------

def _inter_files(path: Path) -> list[Path]:
    """The interaction file, or the split files in train/valid/test order (a split file's siblings included)."""
    if path.is_file():
        split = _split_of(path)
        if split is None:
            return [path]
        return [f for f in (_split_path(path.parent, _stem(path), s) for s in SPLITS) if f.is_file()]
    if not path.is_dir():
        raise DataError("not found", path)
    found = sorted(path.glob("*.inter"))
    plain = [p for p in found if _split_of(p) is None]
    splits = [p for p in found if _split_of(p) is not None]
    stems = sorted({_stem(p) for p in splits})
    if len(plain) == 1 and not splits:
        return plain
    if not plain and len(stems) == 1:
        return [f for f in (_split_path(path, stems[0], s) for s in SPLITS) if f.is_file()]
    raise DataError(f"expected exactly one *.inter file or one set of X.train/valid/test.inter split files, found "
                    f"{[p.name for p in found]}; pass the file to read", path)


def _split_of(path: Path) -> str | None:
    parts = path.name.split(".")
    return parts[-2] if len(parts) >= 3 and parts[-1] == "inter" and parts[-2] in SPLITS else None


def _stem(path: Path) -> str:
    name = path.name.removesuffix(".inter")
    split = _split_of(path)
    return name.removesuffix(f".{split}") if split else name


def _split_path(folder: Path, stem: str, split: str) -> Path:
    return folder / f"{stem}.{split}.inter"


def _item_file(folder: Path, stem: str) -> Path:
    for suffix in (".item", ".text"):
        if (folder / f"{stem}{suffix}").is_file():
            return folder / f"{stem}{suffix}"
    return folder / f"{stem}.item"


def _default_images(folder: Path) -> Path | None:
    for name in ("posters", "images"):
        if (folder / name).is_dir():
            return folder / name
    return None


def _header(path: Path) -> tuple[list[str], list[str]]:
    """(field names, field types) of the header line."""
    for line_no, text in iter_lines(path):
        check_no_nul(text, path, line_no)
        cells = [cell.strip() for cell in text.split("\t")]
        names = [cell.split(":")[0].strip() for cell in cells]
        types = [cell.split(":", 1)[1].strip() if ":" in cell else "" for cell in cells]
        if len(set(names)) != len(names):
            repeated = next(n for n in names if names.count(n) > 1)
            raise DataError(f"column {repeated!r} appears twice in the header", path, 1, repeated)
        return names, types
    raise DataError("empty file (expected a typed header such as 'user_id:token')", path, 1)


def _rows(path: Path, required: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield (line number, {field: value}) with the `:type` suffix stripped from header names."""
    header, _ = _header(path)
    for field in required:
        if field not in header:
            raise DataError(f"missing column (header is {header})", path, 1, field)
    for line_no, line in iter_lines(path):
        if line_no == 1 or not line.strip():
            continue
        check_no_nul(line, path, line_no)
        values = line.split("\t")
        if len(values) != len(header):
            raise DataError(f"expected {len(header)} tab-separated fields, found {len(values)}", path, line_no)
        row = dict(zip(header, (v.strip() for v in values), strict=True))
        for field in required:
            if not row[field]:
                raise DataError("empty value", path, line_no, field)
        yield line_no, row


def _timestamp(row: dict[str, str], path: Path, line: int) -> int | None:
    value = row.get("timestamp")
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        raise DataError(f"not a number: {value!r}", path, line, "timestamp") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise DataError(f"not a finite number: {value!r}", path, line, "timestamp")
    return check_int64(int(number), path, line, "timestamp")


# --- items ----------------------------------------------------------------------------------------

def _add_items(item_file: Path, image_folder: Path | None, builder: DatasetBuilder, item_map: IdMap | None) -> None:
    """The catalog: `X.item` / `X.text` rows in file order, or, with an id map, every mapped item in index order
    (with its metadata where the item file has it; an item file row outside the map is an error)."""
    pictures = images_by_stem(image_folder) if image_folder else {}
    records: list[tuple[int | None, ItemRecord]] = []
    if item_file.is_file():
        for line, row in _rows(item_file, required=("item_id",)):
            record = _record(row, None)
            if item_map is not None:
                record.source_index = _canonical(record.item_id)
                record.item_id = _map_id(record.item_id, item_map, item_file, line, "item_id")
            records.append((line, record))
    if item_map is not None:
        by_index = {r.source_index: (line, r) for line, r in records}
        records = [by_index.get(i) or (None, ItemRecord(item_map[i], source_index=i))
                   for i in sorted(item_map, key=int)]
    for line, record in records:
        image = pictures.get(record.item_id)
        record.image = str(image) if image else None
        builder.add_item(record, item_file if line is not None else "id map", line)


def _record(row: dict[str, str], image: str | None) -> ItemRecord:
    title = next((row[f] for f in TITLE_FIELDS if row.get(f)), "")
    year = next((row[f] for f in YEAR_FIELDS if row.get(f)), "")
    categories = next((row[f].split() for f in CATEGORY_FIELDS if row.get(f)), [])
    return ItemRecord(row["item_id"], title=f"{title} ({year})" if title and year else title,
                      categories=categories, image=image)


def _canonical(value: str) -> str:
    return str(int(value)) if value.isascii() and value.isdigit() else value


def _map_id(value: str, mapping: IdMap, path: Path, line: int, field: str) -> str:
    key = _canonical(value)
    if key not in mapping:
        raise DataError(f"{value!r} is not in the id map", path, line, field)
    return mapping[key]


# --- benchmark splits -----------------------------------------------------------------------------

@dataclass
class SplitRow:
    """One line of a split file: `history` (oldest first) -> `target`."""

    path: Path
    line: int
    history: list[str]
    target: str


def _read_splits(files: list[Path], stem: str, item_file: Path, image_folder: Path | None,
                 builder: DatasetBuilder) -> None:
    folder = files[0].parent
    item_map_file, user_map_file = (companion(folder, stem, kind) for kind in ("item", "user"))
    item_map = read_tab_map(item_map_file) if item_map_file else None
    user_map = read_tab_map(user_map_file) if user_map_file else None
    _add_items(item_file, image_folder, builder, item_map)
    per_user: dict[str, list[list[SplitRow]]] = {}
    for position, path in enumerate(files):
        for user, rows in _split_rows(path).items():
            per_user.setdefault(user, [[] for _ in files])[position] = rows
    test = next((i for i, f in enumerate(files) if _split_of(f) == "test"), None)
    for user, groups in per_user.items():
        if test is not None and not groups[test]:
            row = next(r for g in groups for r in g)
            raise DataError(f"user {user!r} has no row in {files[test].name}", row.path, row.line, "user_id")
        sequence, first = _rebuild(user, [_chronological(g) for g in groups])
        user_id = _map_id(user, user_map, first.path, first.line, "user_id") if user_map else user
        builder.add_user(user_id, first.path, first.line, source_index=user if user_map else None)
        for item in sequence:
            builder.add_interaction(user_id, _map_id(item, item_map, first.path, first.line, "item_id")
                                    if item_map else item)


def _split_rows(path: Path) -> dict[str, list[SplitRow]]:
    header, _ = _header(path)
    for field in ("user_id", HISTORY, "item_id"):
        if field not in header:
            raise DataError(f"missing column (a split file has user_id, {HISTORY}, item_id; header is {header})",
                            path, 1, field)
    extra = [n for n in header if n not in ("user_id", HISTORY, "item_id")]
    if extra:
        raise DataError(f"unexpected column {extra[0]!r} in a split file (it would be ignored)", path, 1, extra[0])
    out: dict[str, list[SplitRow]] = {}
    split = _split_of(path)
    for line, row in _rows(path, required=("user_id", "item_id")):
        history = row[HISTORY].split()
        out.setdefault(row["user_id"], []).append(SplitRow(path, line, history, row["item_id"]))
        if split in ("valid", "test") and len(out[row["user_id"]]) > 1:
            raise DataError(f"user {row['user_id']!r} has a second {split} row (first at line "
                            f"{out[row['user_id']][0].line})", path, line, "user_id")
    return out


def _chronological(rows: list[SplitRow]) -> list[SplitRow]:
    """A user's rows of one file, oldest first: history lengths never decrease forwards (UniSRec writes them
    backwards); anything else cannot be ordered and is an error."""
    lengths = [len(r.history) for r in rows]
    if all(a <= b for a, b in zip(lengths, lengths[1:], strict=False)):
        return rows
    if all(a >= b for a, b in zip(lengths, lengths[1:], strict=False)):
        return rows[::-1]
    bad = next(r for r, a, b in zip(rows[1:], lengths, lengths[1:], strict=False) if b < a)
    raise DataError("this user's rows are in no chronological order (history lengths go up and down)", bad.path,
                    bad.line, HISTORY)


def _rebuild(user: str, groups: list[list[SplitRow]]) -> tuple[list[str], SplitRow]:
    """The user's full sequence (earliest history + every target) and the row it starts at; checks every row."""
    rows = [r for group in groups for r in group]
    first = rows[0]
    sequence = [*first.history, *(r.target for r in rows)]
    for position, row in enumerate(rows):
        end = len(first.history) + position                  # the row's target is sequence[end]
        expected = sequence[max(0, end - len(row.history)):end]
        if row.history != expected or len(row.history) > end:
            raise DataError(f"user {user!r}: history {_short(row.history)} disagrees with the sequence the other "
                            f"rows give ({_short(expected)} before target {row.target!r})", row.path, row.line,
                            HISTORY)
    return sequence, first


def _short(items: list[str], limit: int = 6) -> str:
    shown = " ".join(items[-limit:])
    return f"[... {shown}]" if len(items) > limit else f"[{shown}]"
