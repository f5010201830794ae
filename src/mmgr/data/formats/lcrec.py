"""LC-Rec / LETTER / MQL4GRec json: `X.inter.json` `{user: [item, ...]}` (chronological) and an optional
`X.item.json` `{item: {title, description, brand, categories}}` (categories a comma-separated string)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mmgr.data.builder import DatasetBuilder, ItemRecord
from mmgr.data.formats import READERS
from mmgr.errors import DataError


@READERS.register("lcrec")
def read_lcrec(path: Path, items: Path | None = None, images: Path | None = None) -> DatasetBuilder:
    inter_file = _find(path, ".inter.json")
    name = inter_file.name.removesuffix(".inter.json")
    item_file = items or inter_file.with_name(f"{name}.item.json")
    sequences = _load_object(inter_file)
    builder = DatasetBuilder(name)
    if item_file.is_file():
        for item_id, meta in sorted(_load_object(item_file).items(), key=lambda kv: _id_key(kv[0])):
            builder.add_item(_record(item_id, meta, item_file), item_file)
    for user, history in sequences.items():
        if not isinstance(history, list):
            raise DataError(f"user {user!r}: expected a list of item ids, got {type(history).__name__}",
                            inter_file, field=user)
        builder.add_user(str(user), inter_file)
        for item in history:
            builder.add_interaction(str(user), str(item), None)
    return builder


def _find(path: Path, suffix: str) -> Path:
    if path.is_file():
        return path
    found = sorted(path.glob(f"*{suffix}")) if path.is_dir() else []
    if len(found) != 1:
        raise DataError(f"expected exactly one *{suffix} file, found {[p.name for p in found]}", path)
    return found[0]


def _load_object(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"not valid JSON: {exc.msg}", path, exc.lineno) from None
    if not isinstance(data, dict):
        raise DataError(f"expected a JSON object at the top level, got {type(data).__name__}", path)
    return data


def _id_key(item_id: str) -> tuple[int, int | str]:
    return (0, int(item_id)) if item_id.isdigit() else (1, item_id)


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
