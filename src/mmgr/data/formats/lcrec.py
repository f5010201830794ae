"""LC-Rec / LETTER / MQL4GRec json: `X.inter.json` `{user: [item, ...]}` (chronological), an optional
`X.item.json` `{item: {title, description, brand, categories}}` (categories a comma-separated string), and optional
id maps `X.item2id` / `X.user2id` (`RAW_ID<TAB>INDEX`, as MQL4GRec publishes them).

With `X.item2id`, item ids are the real ASINs (the file's index is kept as `source_index`) and the catalog is in
index order; every item the files name must be in the map. `X.user2id` does the same for users. `--items` may name
the `X.item.json` file, or an `asin,title` CSV joined by the real item id (with a map) or by the file's id.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmgr.data.builder import DatasetBuilder, ItemRecord
from mmgr.data.formats import READERS
from mmgr.data.formats.idmaps import IdMap, companion, read_tab_map
from mmgr.data.formats.textio import load_json
from mmgr.errors import DataError

SUFFIX = ".inter.json"


@READERS.register("lcrec")
def read_lcrec(path: Path, items: Path | None = None, images: Path | None = None) -> DatasetBuilder:
    inter_file = _find(Path(path), SUFFIX)
    name = inter_file.name.removesuffix(SUFFIX)
    item_map_file, user_map_file = (companion(inter_file.parent, name, kind) for kind in ("item", "user"))
    item_map = read_tab_map(item_map_file) if item_map_file else None
    user_map = read_tab_map(user_map_file) if user_map_file else None
    sequences = _load_object(inter_file)
    builder = DatasetBuilder(name)
    builder.source = inter_file
    item_file = Path(items) if items else inter_file.with_name(f"{name}.item.json")
    records = _catalog(item_file, item_map) if item_file.is_file() else {}
    if item_map is not None:
        _add_mapped_items(builder, item_map, records, item_map_file)
    else:
        for item_id in sorted(records, key=_id_key):
            builder.add_item(records[item_id], item_file)
    for user, history in sequences.items():
        if not isinstance(history, list):
            raise DataError(f"user {user!r}: expected a list of item ids, got {type(history).__name__}",
                            inter_file, field=user)
        user_id = _mapped(str(user), user_map, user_map_file, inter_file, "user", user)
        builder.add_user(user_id, inter_file, source_index=str(user) if user_map is not None else None)
        for position, item in enumerate(history):
            key = _item_key(item, inter_file, f"{user}[{position}]")
            builder.add_interaction(user_id, _mapped(key, item_map, item_map_file, inter_file, "item",
                                                     f"{user}[{position}]"))
    return builder


def _find(path: Path, suffix: str) -> Path:
    if path.is_file():
        return path
    found = sorted(path.glob(f"*{suffix}")) if path.is_dir() else []
    if len(found) != 1:
        raise DataError(f"expected exactly one *{suffix} file, found {[p.name for p in found]}", path)
    return found[0]


def _load_object(path: Path) -> dict[str, Any]:
    data = load_json(path)
    if not isinstance(data, dict):
        raise DataError(f"expected a JSON object at the top level, got {type(data).__name__}", path)
    return data


def _item_key(item: Any, path: Path, field: str) -> str:
    """An item id in a history: a non-negative integer or a non-empty string (never a bool, float, list...)."""
    if isinstance(item, bool) or not isinstance(item, int | str):
        raise DataError(f"expected an item id (integer or string), got {type(item).__name__} {item!r}", path,
                        field=field)
    if isinstance(item, int) and item < 0:
        raise DataError(f"negative item id {item}", path, field=field)
    key = str(item).strip()
    if not key or "\x00" in key:
        raise DataError(f"empty or invalid item id {item!r}", path, field=field)
    return key


def _mapped(key: str, mapping: IdMap | None, map_file: Path | None, path: Path, kind: str, field: str) -> str:
    if mapping is None:
        return key
    real = mapping.get(_canonical(key))
    if real is None:
        raise DataError(f"{kind} {key!r} is not in {map_file.name if map_file else 'the id map'}", path,
                        field=field)
    return real


def _canonical(key: str) -> str:
    return str(int(key)) if key.isascii() and key.isdigit() else key


def _catalog(item_file: Path, item_map: IdMap | None) -> dict[str, ItemRecord]:
    """{file item id: record} from `X.item.json`, or from an `asin,title` CSV."""
    if item_file.suffix.lower() == ".csv":
        from mmgr.data.formats.p5 import read_titles

        titles = read_titles(item_file, ("asin", "item_id"))
        if item_map is not None:           # keyed by real id: back to the file's index
            index_of = {raw: index for index, raw in item_map.items()}
            return {index_of.get(k, k): ItemRecord(k, title=t) for k, t in titles.items()}
        return {k: ItemRecord(k, title=t) for k, t in titles.items()}
    return {str(k): _record(str(k), meta, item_file) for k, meta in _load_object(item_file).items()}


def _add_mapped_items(builder: DatasetBuilder, item_map: IdMap, records: dict[str, ItemRecord],
                      map_file: Path | None) -> None:
    """The catalog in the map's index order, with real ids; metadata for an unmapped item is an error."""
    unknown = [k for k in records if _canonical(k) not in item_map and k not in item_map.values()]
    if unknown:
        raise DataError(f"item {unknown[0]!r} has metadata but is not in the id map", map_file,
                        field=unknown[0])
    by_index = {_canonical(k): r for k, r in records.items()}
    for index in sorted(item_map, key=int):
        record = by_index.get(index) or ItemRecord(item_map[index])
        record.item_id, record.source_index = item_map[index], index
        builder.add_item(record, map_file or "id map")


def _id_key(item_id: str) -> tuple[int, int | str]:
    return (0, int(item_id)) if item_id.isascii() and item_id.isdigit() else (1, item_id)


def _record(item_id: str, meta: Any, path: Path) -> ItemRecord:
    if not isinstance(meta, dict):
        raise DataError(f"item {item_id!r}: expected an object of text fields", path, field=item_id)
    text = {key: meta.get(key) or "" for key in ("title", "description", "brand", "categories")}
    for key, value in text.items():
        if not isinstance(value, str):
            raise DataError(f"item {item_id!r}: expected a string, got {type(value).__name__}", path,
                            field=f"{item_id}.{key}")
    categories = [c.strip() for c in text["categories"].split(",") if c.strip()]
    return ItemRecord(item_id, title=text["title"].strip(), description=text["description"].strip(),
                      brand=text["brand"].strip(), categories=categories)
