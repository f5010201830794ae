"""P5 / S3-Rec format: `sequential_data.txt` or `sequential.txt` (`user item item ...`, 1-based ids, chronological)
+ `datamaps.json` (`id2item`, optional `id2user`; or their inverses `item2id`, `user2id`), with an optional
`items.csv` (`asin,title`) next to it or in its parent folder.

PATH is the folder holding them (or its parent, when they are in a `p5/` subfolder) or the sequence file itself.
Item ids are the ASINs of `id2item`; user ids are the reviewer ids of `id2user` / `user2id` when the map has them
(else the file's user numbers). The P5 numbers are kept as `source_index`.
"""

from __future__ import annotations

from pathlib import Path

from mmgr.data.builder import DatasetBuilder, ItemRecord
from mmgr.data.formats import READERS
from mmgr.data.formats.idmaps import IdMap, from_mapping
from mmgr.data.formats.textio import check_no_nul, csv_records, iter_lines, load_json
from mmgr.errors import DataError

SEQUENCE_NAMES = ("sequential_data.txt", "sequential.txt")
DATAMAPS = "datamaps.json"


@READERS.register("p5")
def read_p5(path: Path, items: Path | None = None, images: Path | None = None) -> DatasetBuilder:
    sequences_file = locate(Path(path))
    folder = sequences_file.parent
    datamaps_file = folder / DATAMAPS
    if not datamaps_file.is_file():
        raise DataError(f"missing (a P5 folder holds {' or '.join(SEQUENCE_NAMES)} and {DATAMAPS})",
                        datamaps_file)
    id2item, id2user = read_datamaps(datamaps_file)
    titles = _read_titles(Path(items) if items else _find_items_csv(folder))
    builder = DatasetBuilder(folder.parent.name if folder.name == "p5" else folder.name)
    builder.source = sequences_file
    for p5_id, asin in sorted(id2item.items(), key=lambda kv: int(kv[0])):
        builder.add_item(ItemRecord(asin, title=titles.get(asin, ""), source_index=p5_id), datamaps_file)
    if titles:
        untitled = sum(1 for asin in id2item.values() if not titles.get(asin))
        if untitled:
            builder.problems.add("items with an empty title (text modality masked)", count=untitled)
    _read_sequences(sequences_file, id2item, id2user, builder)
    return builder


def locate(path: Path) -> Path:
    """The sequence file: PATH itself, or the one in PATH (or in its `p5/` subfolder)."""
    if path.is_file():
        return path
    if not path.is_dir():
        raise DataError("not found", path)
    for folder in (path, path / "p5"):
        found = [folder / name for name in SEQUENCE_NAMES if (folder / name).is_file()]
        if len(found) > 1:
            raise DataError(f"both {' and '.join(p.name for p in found)} exist; pass the one to use", folder)
        if found:
            return found[0]
    raise DataError(f"missing (a P5 folder holds {' or '.join(SEQUENCE_NAMES)} and {DATAMAPS})",
                    path / SEQUENCE_NAMES[0])


def read_datamaps(path: Path) -> tuple[IdMap, IdMap | None]:
    """({P5 item id: ASIN}, {P5 user id: reviewer id} or None) from `datamaps.json`."""
    maps = load_json(path)
    if not isinstance(maps, dict):
        raise DataError(f"expected an object with an 'id2item' mapping, got {type(maps).__name__}", path)
    return _one_map(maps, path, "item", required=True), _one_map(maps, path, "user", required=False)


def _one_map(maps: dict, path: Path, kind: str, required: bool) -> IdMap | None:
    forward, inverse = f"id2{kind}", f"{kind}2id"
    if forward in maps:
        return from_mapping(maps[forward], path, forward, inverse=False)
    if inverse in maps:
        return from_mapping(maps[inverse], path, inverse, inverse=True)
    if required:
        raise DataError(f"expected an object with an '{forward}' (or '{inverse}') mapping", path, field=forward)
    return None


def _find_items_csv(folder: Path) -> Path | None:
    for candidate in (folder / "items.csv", folder.parent / "items.csv"):
        if candidate.is_file():
            return candidate
    return None


def read_titles(path: Path, key_columns: tuple[str, ...] = ("asin",)) -> dict[str, str]:
    """{id: title} of an `asin,title` CSV (strict quoting; duplicate or empty ids are errors)."""
    records = csv_records(path)
    first = next(records, None)
    header = [name.strip() for name in first[1]] if first else []
    key = next((c for c in key_columns if c in header), None)
    for field, present in ((key_columns[0], key), ("title", "title" in header)):
        if not present:
            raise DataError(f"missing column (header is {header})", path, 1, field)
    at_key, at_title = header.index(key), header.index("title")
    titles: dict[str, str] = {}
    for line, fields in records:
        if len(fields) != len(header):
            raise DataError(f"expected {len(header)} comma-separated fields, found {len(fields)}", path, line)
        item, title = fields[at_key].strip(), fields[at_title].strip()
        if not item:
            raise DataError("empty value", path, line, key)
        if item in titles:
            raise DataError(f"duplicate {key} {item!r}", path, line, key)
        titles[item] = title
    return titles


def _read_titles(path: Path | None) -> dict[str, str]:
    return {} if path is None else read_titles(path)


def _read_sequences(path: Path, id2item: IdMap, id2user: IdMap | None, builder: DatasetBuilder) -> None:
    for line_no, line in iter_lines(path):
        check_no_nul(line, path, line_no)
        fields = line.split()
        if not fields:
            builder.problems.add("blank lines (skipped)", "blank line", path, line_no)
            continue
        p5_user, history = fields[0], fields[1:]
        user = _user(p5_user, id2user, path, line_no)
        builder.add_user(user, path, line_no, source_index=p5_user if id2user is not None else None)
        for position, p5_id in enumerate(history, start=2):
            asin = id2item.get(p5_id)
            if asin is None:
                raise DataError(f"unknown item id {p5_id!r} (not in {DATAMAPS} id2item)", path, line_no,
                                f"column {position}")
            builder.add_interaction(user, asin, None)


def _user(p5_user: str, id2user: IdMap | None, path: Path, line_no: int) -> str:
    if id2user is None:
        return p5_user
    user = id2user.get(p5_user)
    if user is None:
        raise DataError(f"unknown user id {p5_user!r} (not in {DATAMAPS} id2user)", path, line_no, "column 1")
    return user
