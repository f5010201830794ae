"""Careful, independent readings of each format's file: {user id: [item ids]} (or the SID table's codes), or
`Invalid` when the file must be refused."""

from __future__ import annotations

import csv
import io
import json
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mmgr.fuzzing.cases import Source

Sequences = dict[str, list[str]]
INT64 = 2**63


class Invalid(Exception):
    """The reference reading refuses the file."""



def decode(data: bytes) -> str:
    """UTF-8 text without its BOM; invalid bytes or NUL are invalid."""
    try:
        text = data.removeprefix(b"\xef\xbb\xbf").decode("utf-8")
    except UnicodeDecodeError:
        raise Invalid("not UTF-8") from None
    if "\x00" in text:
        raise Invalid("NUL")
    return text


def text_lines(data: bytes) -> list[str]:
    return [line.removesuffix("\r") for line in decode(data).split("\n")]


def strict_json(text: str) -> Any:
    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [k for k, _ in items]
        if len(set(keys)) != len(keys):
            raise Invalid("duplicate key")
        return dict(items)

    def constant(name: str) -> Any:
        raise Invalid(name)

    try:
        return json.loads(text, object_pairs_hook=pairs, parse_constant=constant)
    except (ValueError, RecursionError):          # JSONDecodeError, or an integer of over 4300 digits
        raise Invalid("JSON") from None


def chronological(events: dict[str, list[tuple[int | None, int, str]]]) -> Sequences:
    out = {}
    for user, items in events.items():
        timed = all(ts is not None for ts, _, _ in items)
        ordered = sorted(items, key=lambda e: (e[0], e[1])) if timed else items
        if ordered:
            out[user] = [item for _, _, item in ordered]
    if not out:
        raise Invalid("no users")
    return out


def canonical(key: str) -> str:
    return str(int(key)) if key.isascii() and key.isdigit() else key


def ref_p5(data: bytes, source: Source) -> Sequences:
    id2item, id2user = source.maps["item"], source.maps["user"]
    out: Sequences = {}
    for line in text_lines(data):
        fields = line.split()
        if not fields:
            continue
        if fields[0] not in id2user or id2user[fields[0]] in out:
            raise Invalid("user")
        items = [id2item.get(f) for f in fields[1:]]
        if None in items:
            raise Invalid("item")
        out[id2user[fields[0]]] = items
    return chronological({u: [(None, i, item) for i, item in enumerate(s)] for u, s in out.items()})


def ref_lcrec(data: bytes, source: Source) -> Sequences:
    obj = strict_json(decode(data))
    if not isinstance(obj, dict):
        raise Invalid("top")
    item_map = source.maps["item"]
    events = {}
    for user, history in obj.items():
        if not isinstance(history, list):
            raise Invalid("history")
        items = []
        for item in history:
            if isinstance(item, bool) or not isinstance(item, int | str) or (isinstance(item, int) and item < 0):
                raise Invalid("item type")
            key = str(item).strip()
            if not key or canonical(key) not in item_map:
                raise Invalid("unknown item")
            items.append(item_map[canonical(key)])
        events[user] = [(None, i, item) for i, item in enumerate(items)]
    return chronological(events)


def _tsv(lines: list[str]) -> tuple[list[str], list[list[str]]]:
    if not lines or not lines[0].strip():
        raise Invalid("header")
    header = [cell.split(":")[0].strip() for cell in lines[0].split("\t")]
    if len(set(header)) != len(header):
        raise Invalid("header")
    rows = []
    for line in lines[1:]:
        if not line.strip():
            continue
        values = [v.strip() for v in line.split("\t")]
        if len(values) != len(header):
            raise Invalid("columns")
        rows.append(values)
    return header, rows


def _number_ts(text: str) -> int:
    try:
        value = float(text)
    except ValueError:
        raise Invalid("timestamp") from None
    if value != value or value in (float("inf"), float("-inf")) or not -INT64 <= int(value) < INT64:
        raise Invalid("timestamp")
    return int(value)


def ref_recbole(data: bytes, source: Source) -> Sequences:
    header, rows = _tsv(text_lines(data))
    if "user_id" not in header or "item_id" not in header or "item_id_list" in header:
        raise Invalid("header")
    events: dict[str, list[tuple[int | None, int, str]]] = {}
    for order, values in enumerate(rows):
        row = dict(zip(header, values, strict=True))
        if not row["user_id"] or not row["item_id"]:
            raise Invalid("empty")
        ts = _number_ts(row["timestamp"]) if "timestamp" in row else None
        events.setdefault(row["user_id"], []).append((ts, order, row["item_id"]))
    return chronological(events)


def ref_recbole_test_split(data: bytes, source: Source) -> Sequences:
    """The test file of a split set whose train/valid files are fixed: each user's known prefix + test target."""
    header, rows = _tsv(text_lines(data))
    if sorted(header) != sorted(["user_id", "item_id_list", "item_id"]):
        raise Invalid("header")
    prefixes = {u: s[:-1] for u, s in source.maps["full"].items()}
    out: Sequences = {}
    for values in rows:
        row = dict(zip(header, values, strict=True))
        user, history, target = row["user_id"], row["item_id_list"].split(), row["item_id"]
        if not user or not target or user in out:
            raise Invalid("row")
        prefix = prefixes.get(user)
        if prefix is None:
            out[user] = [*history, target]
            continue
        if len(history) > len(prefix) or (history and prefix[len(prefix) - len(history):] != history):
            raise Invalid("disagrees")
        out[user] = [*prefix, target]
    if set(prefixes) - set(out):
        raise Invalid("user without a test row")
    return out


def _amazon(data: bytes, user_key: str, item_key: str, time_key: str, per_second: int) -> Sequences:
    events: dict[str, list[tuple[int | None, int, str]]] = {}
    for order, line in enumerate(text_lines(data)):
        if not line.strip():
            continue
        record = strict_json(line.strip())
        if not isinstance(record, dict):
            raise Invalid("record")
        user, item, ts = record.get(user_key), record.get(item_key), record.get(time_key)
        for value in (user, item):
            if not isinstance(value, str) or not value.strip():
                raise Invalid("id")
        if isinstance(ts, bool) or not isinstance(ts, int) or not -INT64 <= ts < INT64:
            raise Invalid("timestamp")
        events.setdefault(user.strip(), []).append((ts // per_second, order, item.strip()))
    return chronological(events)


def ref_amazon2014(data: bytes, source: Source) -> Sequences:
    return _amazon(data, "reviewerID", "asin", "unixReviewTime", 1)


def ref_amazon2023(data: bytes, source: Source) -> Sequences:
    return _amazon(data, "user_id", "parent_asin", "timestamp", 1000)


def ref_generic(data: bytes, source: Source) -> Sequences:
    try:
        records = [r for r in csv.reader(io.StringIO(decode(data), newline=""), strict=True) if r]
    except csv.Error:
        raise Invalid("csv") from None
    if not records:
        raise Invalid("empty")
    header = [h.strip() for h in records[0]]
    if len(set(header)) != len(header) or "user_id" not in header or "item_id" not in header:
        raise Invalid("header")
    events: dict[str, list[tuple[int | None, int, str]]] = {}
    for order, values in enumerate(records[1:]):
        if len(values) != len(header):
            raise Invalid("columns")
        row = dict(zip(header, (v.strip() for v in values), strict=True))
        if not row["user_id"] or not row["item_id"]:
            raise Invalid("empty id")
        ts = None
        if "timestamp" in row:
            try:
                ts = int(row["timestamp"])
            except ValueError:
                try:
                    number = float(row["timestamp"])
                except ValueError:
                    raise Invalid("timestamp") from None
                if not number.is_integer():
                    raise Invalid("timestamp") from None
                ts = int(number)
            if not -INT64 <= ts < INT64:
                raise Invalid("timestamp")
        events.setdefault(row["user_id"], []).append((ts, order, row["item_id"]))
    return chronological(events)


def ref_sid_table(data: bytes, source: Source) -> list[list[int]]:
    table = strict_json(decode(data))
    if not isinstance(table, dict) or not table:
        raise Invalid("top")
    keys = next((k for k in (source.maps["keys"], source.maps["ids"]) if set(k) == set(table)), None)
    if keys is None:
        raise Invalid("keys")
    rows = []
    for key in keys:
        tokens = table[key]
        if not isinstance(tokens, list) or not tokens:
            raise Invalid("tokens")
        row = []
        for level, token in enumerate(tokens):
            if isinstance(token, int) and not isinstance(token, bool):
                code = token
            elif isinstance(token, str) and token.isascii() and token.strip().isdigit() and len(token.strip()) < 13:
                code = int(token)
            elif isinstance(token, str) and (m := re.fullmatch(r"<([a-zA-Z])_(\d{1,12})>", token.strip())) \
                    and token.isascii() and m[1].lower() == chr(97 + level):
                code = int(m[2])
            else:
                raise Invalid("token")
            if not 0 <= code < 1 << 20:
                raise Invalid("range")
            row.append(code)
        rows.append(row)
    if len({len(r) for r in rows}) != 1:
        raise Invalid("depth")
    return rows


