"""Seeded mutations of small valid source files, and a careful reference reading of each, for fuzzing the readers.

Shared by `tests/unit/test_fuzz_readers.py` (hypothesis draws the seeds) and `benchmarks/fuzz.py` (a fixed budget).

A `Source` is a small valid dataset of one reader: its files, the one file that gets mutated, and `reference`, an
independent careful reading of that file (the other files are fixed) that returns {user id: [item ids]} or raises
`Invalid`. `run_case` imports the mutated source through `mmgr.data.importer.import_into_run` and classifies it:

- `accepted`: imported, and the import equals the reference reading;
- `rejected`: a `MmgrError` whose message names the mutated file (and nothing of the run was left behind);
- `crash`: any other exception (a traceback for the user), or a rejection that names no file or leaves a run;
- `misread`: imported, but the reference says the file is invalid or reads other sequences (a silent misread);
- `benign_rejected`: a mutation that must not change anything (BOM, CRLF, blank lines, spaces) was refused.

The SID-table source imports a mutated `index.json` into a fixed small run (`import_codes`) and compares the codes.
"""

from __future__ import annotations

import csv
import io
import json
import random
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmgr.errors import MmgrError

Sequences = dict[str, list[str]]
INT64 = 2**63


class Invalid(Exception):
    """The reference reading refuses the file."""


# --- mutations ------------------------------------------------------------------------------------

TOKEN = re.compile(rb"[A-Za-z0-9_]+")
JSON_VALUE = re.compile(rb'"(?:[^"\\\n]|\\.)*"|-?\d+(?:\.\d+)?')
FIRST_KEY = re.compile(rb'\{\s*("(?:[^"\\\n]|\\.)*")\s*:')
MEMBER = re.compile(rb'"[^"\\\n]*"\s*:\s*[^,{}\[\]\n]+,\s*')
BAD_UTF8 = (b"\xff", b"\xc3(", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\x80", b"\xe2\x82")
WRONG_JSON = (b"{}", b"[]", b"true", b"null", b"1.5", b'"x"', b"[[1]]", b"NaN", b"-0")


def _at(rng: random.Random, data: bytes) -> int:
    return rng.randrange(len(data) + 1)


def _insert(data: bytes, at: int, piece: bytes) -> bytes:
    return data[:at] + piece + data[at:]


def _lines(data: bytes) -> list[bytes]:
    return data.split(b"\n")


def _replace_token(rng: random.Random, data: bytes, pattern: re.Pattern[bytes], new: Callable[[bytes], bytes],
                   skip_header: bool = False) -> bytes:
    start = data.find(b"\n") + 1 if skip_header else 0
    found = [m for m in pattern.finditer(data) if m.start() >= start]
    if not found:
        return data
    m = rng.choice(found)
    return data[:m.start()] + new(m.group()) + data[m.end():]


def truncation(rng: random.Random, data: bytes, source: Source) -> bytes:
    return data[:rng.randrange(len(data))]


def byte_flips(rng: random.Random, data: bytes, source: Source) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        i = rng.randrange(len(out))
        out[i] ^= 1 << rng.randrange(8)
    return bytes(out)


def invalid_utf8(rng: random.Random, data: bytes, source: Source) -> bytes:
    return _insert(data, _at(rng, data), rng.choice(BAD_UTF8))


def nul_byte(rng: random.Random, data: bytes, source: Source) -> bytes:
    return _insert(data, _at(rng, data), b"\x00")


def unclosed_quote(rng: random.Random, data: bytes, source: Source) -> bytes:
    return _insert(data, _at(rng, data), b'"')


def doubled_quote(rng: random.Random, data: bytes, source: Source) -> bytes:
    return _insert(data, _at(rng, data), b'""')


def extra_column(rng: random.Random, data: bytes, source: Source) -> bytes:
    if source.sep is None:                                  # JSON: an extra member
        spots = [m.end() for m in re.finditer(rb"\{", data)]
        at = rng.choice(spots) if spots else 0
        return _insert(data, at, b'"extra": 1, ')
    lines = _lines(data)
    i = rng.randrange(len(lines))
    lines[i] = lines[i] + source.sep + rng.choice([b"7", b"x", b"", b"1 2"])
    return b"\n".join(lines)


def missing_column(rng: random.Random, data: bytes, source: Source) -> bytes:
    if source.sep is None:
        found = list(MEMBER.finditer(data))
        if not found:
            return data
        m = rng.choice(found)
        return data[:m.start()] + data[m.end():]
    lines = _lines(data)
    i = rng.randrange(len(lines))
    if source.sep in lines[i]:
        lines[i] = lines[i].rsplit(source.sep, 1)[0]
    return b"\n".join(lines)


def duplicate_line(rng: random.Random, data: bytes, source: Source) -> bytes:
    lines = _lines(data)
    i = rng.randrange(1 if source.header else 0, len(lines)) if len(lines) > 1 else 0
    lines.insert(i, lines[i])
    return b"\n".join(lines)


def duplicate_json_key(rng: random.Random, data: bytes, source: Source) -> bytes:
    found = list(FIRST_KEY.finditer(data))
    if not found:
        return duplicate_line(rng, data, source)
    m = rng.choice(found)
    value = rng.choice([b"[1]", b'"X"', b"5", b'["<a_1>"]'])
    return data[:m.start() + 1] + m.group(1) + b": " + value + b", " + data[m.start() + 1:]


def unknown_id(rng: random.Random, data: bytes, source: Source) -> bytes:
    return _replace_token(rng, data, TOKEN, lambda _: rng.choice([b"999", b"ZZZ9", b"0", b"A9"]), source.header)


def negative_or_huge_id(rng: random.Random, data: bytes, source: Source) -> bytes:
    choices = [b"-1", b"-7", b"99999999999999999999999", b"1e30", b"9223372036854775808", b"18446744073709551616"]
    return _replace_token(rng, data, re.compile(rb"\d+"), lambda _: rng.choice(choices), source.header)


def empty_field(rng: random.Random, data: bytes, source: Source) -> bytes:
    return _replace_token(rng, data, TOKEN, lambda _: b"", source.header)


def long_line(rng: random.Random, data: bytes, source: Source) -> bytes:
    return _replace_token(rng, data, TOKEN, lambda token: token * (100_000 // max(1, len(token))), source.header)


def wrong_json_type(rng: random.Random, data: bytes, source: Source) -> bytes:
    return _replace_token(rng, data, JSON_VALUE, lambda _: rng.choice(WRONG_JSON))


def header_damage(rng: random.Random, data: bytes, source: Source) -> bytes:
    end = data.find(b"\n")
    end = len(data) if end < 0 else end
    head = _replace_token(rng, data[:end], TOKEN, lambda _: rng.choice([b"", b"user", b"item_id", b"x"]))
    return head + data[end:]


def bom(rng: random.Random, data: bytes, source: Source) -> bytes:
    return b"\xef\xbb\xbf" + data


def crlf(rng: random.Random, data: bytes, source: Source) -> bytes:
    return data.replace(b"\n", b"\r\n")


def trailing_blank_lines(rng: random.Random, data: bytes, source: Source) -> bytes:
    return data.rstrip(b"\n") + b"\n" * rng.randint(2, 5)


def extra_spaces(rng: random.Random, data: bytes, source: Source) -> bytes:
    lines = _lines(data)
    for i in rng.sample(range(len(lines)), k=max(1, len(lines) // 2)):
        if lines[i].strip():
            lines[i] = b" " * rng.randint(1, 3) + lines[i] + b" " * rng.randint(0, 3)
    return b"\n".join(lines)


Mutation = Callable[[random.Random, bytes, "Source"], bytes]
BENIGN: dict[str, Mutation] = {"bom": bom, "crlf": crlf, "trailing_blank_lines": trailing_blank_lines,
                               "extra_spaces": extra_spaces}
HARMFUL: dict[str, Mutation] = {
    "truncation": truncation, "byte_flips": byte_flips, "invalid_utf8": invalid_utf8, "nul_byte": nul_byte,
    "unclosed_quote": unclosed_quote, "doubled_quote": doubled_quote, "extra_column": extra_column,
    "missing_column": missing_column, "duplicate_line": duplicate_line, "duplicate_json_key": duplicate_json_key,
    "unknown_id": unknown_id, "negative_or_huge_id": negative_or_huge_id, "empty_field": empty_field,
    "long_line": long_line, "wrong_json_type": wrong_json_type, "header_damage": header_damage,
}
MUTATIONS: dict[str, Mutation] = {**BENIGN, **HARMFUL}


def mutate(source: Source, seed: int, names: list[str] | None = None) -> tuple[str, bytes]:
    """(mutation name, mutated bytes of the source's target file) for `seed`; one to three stacked mutations
    when the first is harmful."""
    rng = random.Random(seed)
    pool = names or list(MUTATIONS)
    name = rng.choice(pool)
    data = MUTATIONS[name](rng, source.files[source.target], source)
    if name in HARMFUL and rng.random() < 0.25:
        second = rng.choice(list(HARMFUL))
        data, name = HARMFUL[second](rng, data, source), f"{name}+{second}"
    return name, data


# --- careful reference readings -------------------------------------------------------------------

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


# --- sources --------------------------------------------------------------------------------------

@dataclass
class Source:
    """A small valid dataset of one reader (or a SID table), the file fuzzed and its reference reading."""

    name: str
    format: str
    files: dict[str, bytes]
    target: str
    reference: Callable[[bytes, Source], Any]
    sep: bytes | None = None          # field separator of the target (None: JSON)
    header: bool = False              # the target's first line is a header
    path: str = ""                    # PATH relative to the source folder ("" = the folder)
    maps: dict[str, Any] = field(default_factory=dict)
    expected_clean: Any = None

    def __post_init__(self) -> None:
        self.expected_clean = self.reference(self.files[self.target], self)


FULL = {"0": ["1", "2", "3", "4", "5"], "1": ["2", "3", "1", "6", "2", "4"], "2": ["5", "6", "1", "3"]}


def _splits(full: Sequences, cap: int = 3) -> dict[str, bytes]:
    head = "user_id:token\titem_id_list:token_seq\titem_id:token\n"
    train, valid, test = [head], [head], [head]
    for user, seq in full.items():
        train.extend(f"{user}\t{' '.join(seq[:k][-cap:])}\t{seq[k]}\n" for k in range(len(seq) - 3, 0, -1))
        valid.append(f"{user}\t{' '.join(seq[:-2][-cap:])}\t{seq[-2]}\n")
        test.append(f"{user}\t{' '.join(seq[:-1][-cap:])}\t{seq[-1]}\n")
    return {f"Sci.{n}.inter": "".join(lines).encode() for n, lines in (("train", train), ("valid", valid),
                                                                        ("test", test))}


def sources() -> dict[str, Source]:
    """Every fuzzed reader's small valid source, by name."""
    id2item = {str(i): f"B{i:04d}" for i in range(1, 7)}
    id2user = {str(u): f"AREV{u}" for u in range(1, 5)}
    item2id = "".join(f"ASIN{i}\t{i}\n" for i in range(7)).encode()
    reviews14 = [{"reviewerID": f"U{u}", "asin": f"A{i}", "unixReviewTime": 100 + t, "overall": 5.0}
                 for t, (u, i) in enumerate([(1, 1), (1, 2), (2, 2), (1, 3), (2, 3), (3, 1), (2, 1), (3, 2)])]
    reviews23 = [{"user_id": r["reviewerID"], "parent_asin": r["asin"], "timestamp": r["unixReviewTime"] * 1000,
                  "rating": 4.0} for r in reviews14]
    meta14 = "".join(f"{{'asin': 'A{i}', 'title': 'Item {i}', 'categories': [['Toys']]}}\n" for i in range(1, 4))
    meta23 = "".join(json.dumps({"parent_asin": f"A{i}", "title": f"Item {i}"}) + "\n" for i in range(1, 4))
    out = [
        Source("p5", "p5", {"sequential_data.txt": b"1 1 2 3\n2 2 3 4 1\n3 4 5\n4 5 1 2 6 4\n",
                            "datamaps.json": json.dumps({"id2item": id2item, "id2user": id2user}).encode()},
               "sequential_data.txt", ref_p5, sep=b" ", maps={"item": id2item, "user": id2user}),
        Source("lcrec", "lcrec", {"Toy.inter.json": json.dumps({"0": [0, 1, 2], "1": [2, 3, 4, 0], "2": [4, 1],
                                                                "3": [3, 3, 2]}, indent=1).encode(),
                                  "Toy.item2id": item2id},
               "Toy.inter.json", ref_lcrec, maps={"item": {str(i): f"ASIN{i}" for i in range(7)}}),
        Source("recbole", "recbole", {"toy.inter": (
            b"user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
            b"u1\ti2\t4\t300\nu1\ti1\t5\t100\nu2\ti1\t3\t50\nu1\ti3\t1\t200\nu2\ti3\t2\t60\nu3\ti2\t2\t10\n"),
            "toy.item": b"item_id:token\tmovie_title:token_seq\ni1\tHeat\ni2\tBabe\ni3\tUp\n"},
               "toy.inter", ref_recbole, sep=b"\t", header=True),
        Source("recbole-splits", "recbole", _splits(FULL), "Sci.test.inter", ref_recbole_test_split, sep=b"\t",
               header=True, maps={"full": FULL}),
        Source("amazon2014", "amazon2014", {"reviews_Toy_5.json": "".join(json.dumps(r) + "\n"
                                                                          for r in reviews14).encode(),
                                            "meta_Toy.json": meta14.encode()},
               "reviews_Toy_5.json", ref_amazon2014),
        Source("amazon2023", "amazon2023", {"Toy.jsonl": "".join(json.dumps(r) + "\n" for r in reviews23).encode(),
                                            "meta_Toy.jsonl": meta23.encode()},
               "Toy.jsonl", ref_amazon2023),
        Source("generic", "generic", {
            "interactions.csv": b"user_id,item_id,timestamp\nu1,i2,30\nu1,i1,10\nu2,i3,5\nu1,i4,20\nu2,i1,7\n"
                                b"u3,i2,1\n",
            "items.csv": b'item_id,title,categories\ni1,"One, first",Home|Kitchen\ni2,Two,Toys\ni3,Three,\n'
                         b"i4,Four,\n"},
               "interactions.csv", ref_generic, sep=b",", header=True),
        sid_source(),
    ]
    return {s.name: s for s in out}


SID_CATALOG = [f"ASIN{i}" for i in range(5)]


def sid_source() -> Source:
    """A SID table for the lcrec source's catalog (5 items with real ids; the table keys by source index)."""
    table = {"0": ["<a_1>", "<b_2>", "<c_3>"], "1": ["<A_4>", "<B_0>", "<C_1>"], "2": [5, "6", "<c_7>"],
             "3": ["<a_1>", "<b_2>", "<c_3>"], "4": ["<a_0>", "<b_1>", "<c_0>"]}
    return Source("sid-table", "lcrec", {"Toy.index.json": json.dumps(table, indent=1).encode()},
                  "Toy.index.json", ref_sid_table,
                  maps={"keys": [str(i) for i in range(5)], "ids": SID_CATALOG})


# --- running one case -----------------------------------------------------------------------------

@dataclass
class Outcome:
    source: str
    seed: int
    mutation: str
    kind: str                     # accepted, rejected, crash, misread, benign_rejected
    detail: str = ""
    valid: bool | None = None     # whether the reference reading accepts the mutated file


def run_case(source: Source, seed: int, names: list[str] | None = None, workdir: Path | None = None) -> Outcome:
    """Mutate the source for `seed`, import it, and classify the result against the reference reading."""
    mutation, data = mutate(source, seed, names)
    try:
        expected, valid = source.reference(data, source), True
    except Invalid:
        expected, valid = None, False
    benign = mutation in BENIGN
    if benign and expected != source.expected_clean:
        return Outcome(source.name, seed, mutation, "crash", "reference: benign mutation changed the reading", valid)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        folder = Path(tmp) / "src"
        folder.mkdir()
        for name, content in source.files.items():
            (folder / name).write_bytes(data if name == source.target else content)
        try:
            got, out = _import(source, folder, Path(tmp))
        except MmgrError as exc:
            return _rejected(source, seed, mutation, str(exc), Path(tmp) / "run", benign, valid)
        except Exception as exc:  # noqa: BLE001 - a crash is what the fuzzer looks for
            return Outcome(source.name, seed, mutation, "crash", f"{type(exc).__name__}: {exc}"[:300], valid)
    if not valid:
        return Outcome(source.name, seed, mutation, "misread", "accepted a file the careful reading refuses", valid)
    if got != expected:
        return Outcome(source.name, seed, mutation, "misread", f"read {_short(got)}, expected {_short(expected)}",
                       valid)
    return Outcome(source.name, seed, mutation, "accepted", "", valid)


def _rejected(source: Source, seed: int, mutation: str, message: str, run: Path, benign: bool,
              valid: bool) -> Outcome:
    if source.target not in message:
        return Outcome(source.name, seed, mutation, "crash", f"error names no file: {message[:200]}", valid)
    if source.name != "sid-table" and run.exists():
        return Outcome(source.name, seed, mutation, "crash", f"a run directory was left: {message[:200]}", valid)
    kind = "benign_rejected" if benign else "rejected"
    return Outcome(source.name, seed, mutation, kind, message.split(": ", 1)[-1][:200], valid)


def _import(source: Source, folder: Path, tmp: Path) -> tuple[Any, Path]:
    from mmgr.config import load_config
    from mmgr.data.importer import import_into_run

    if source.name == "sid-table":
        return _import_table(source, folder / source.target), tmp
    config = load_config(overrides=[f"data.format={source.format}", f"data.path={folder / source.path}"])
    out = tmp / "run"
    _, dataset, _ = import_into_run(config, out)
    ids = dataset.items["item_id"].to_pylist()
    users = dataset.sequences["user_id"].to_pylist()
    return {u: [ids[i] for i in s] for u, s in zip(users, dataset.item_sequences(), strict=True)}, out


_SID_RUN: dict[str, Path] = {}


def _import_table(source: Source, table: Path) -> list[list[int]]:
    """Import `table` into a small fixed run (made once per process); existing codes must survive a refusal."""
    from mmgr.io import sha256_file
    from mmgr.rundir import RunDir
    from mmgr.tokenizers.stage import import_codes, load_codes

    run = RunDir(_sid_run())
    codes_file = run.path / "codes" / "text.safetensors"
    before = sha256_file(codes_file)
    try:
        report = import_codes(run, "text", table, "item_id", force=True)
    except MmgrError:
        if sha256_file(codes_file) != before:
            raise AssertionError("a refused table replaced the run's codes") from None
        raise
    codes = load_codes(run)["text"].codes
    return codes[:, :report["levels"]].tolist()


def _sid_run() -> Path:
    if "run" not in _SID_RUN:
        from mmgr.config import load_config
        from mmgr.data.importer import import_into_run
        from mmgr.rundir import RunDir
        from mmgr.tokenizers.stage import import_codes

        base = sources()["lcrec"]
        folder = Path(tempfile.mkdtemp(prefix="mmgr-fuzz-sid-"))
        for name, content in base.files.items():
            (folder / "src" / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / "src" / name).write_bytes(content)
        config = load_config(overrides=["data.format=lcrec", f"data.path={folder / 'src'}"])
        import_into_run(config, folder / "run")
        table = folder / "clean.index.json"
        table.write_bytes(sid_source().files["Toy.index.json"])
        import_codes(RunDir(folder / "run"), "text", table, "item_id")
        _SID_RUN["run"] = folder / "run"
        _SID_RUN["root"] = folder
    return _SID_RUN["run"]


def cleanup() -> None:
    """Remove the SID-table run made by `_sid_run`."""
    root = _SID_RUN.pop("root", None)
    _SID_RUN.pop("run", None)
    if root is not None:
        shutil.rmtree(root, ignore_errors=True)


def _short(value: Any, limit: int = 160) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
