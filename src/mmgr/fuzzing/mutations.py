"""Seeded mutations of a source file: damage a reader must refuse (`HARMFUL`), and changes it must read alike
(`BENIGN`: BOM, CRLF, blank lines, spaces)."""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mmgr.fuzzing.cases import Source


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


