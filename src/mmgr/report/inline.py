"""Numbers in prose, generated from results files: `<!-- value FILE PATH FORMAT -->TEXT<!-- /value -->`.

A value marker names a JSON results file (relative to the results folder), a path into it and a format; the text
between the marker and `<!-- /value -->` belongs to the generator, like a generated table's. Paths are keys joined
by dots (a key holding dots in double quotes); a list is entered by index (`rows[0]`) or by the one element whose
fields match (`claims[row=a,versus=b]`), or filtered to every element that matches (`claims[?verdict=holds]`, a
list). Formats: a Python format spec of a number (`.4f`, `.0%`, `,d`), `len` of a list, or `ci` / `ci-p` of a paired
comparison (a suite's `{"diff", "ci": [lo, hi], "p"}` or a `paired_bootstrap` result): `-0.0014 [-0.0117, +0.0091]`,
the second with `, p=0.807` after it.

    <!-- value suite-ml-100k/summary.json rows[name=tiger-text].metrics.ndcg@10 .4f -->0.0593<!-- /value -->
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mmgr.errors import MmgrError
from mmgr.report.paired import interval_text

MARKER = re.compile(r"(<!-- value (\S+) ([^>]+) (\S+) -->)(.*?)(<!-- /value -->)")   # a path may hold spaces
SEGMENT = re.compile(r'(?:"([^"]+)"|([^.\[\]"]+))((?:\[[^\]]*\])*)')   # a key with dots is quoted


class MarkerError(MmgrError):
    """A value marker that names no file, no path in it, or a format its value cannot take."""


def lookup(data: Any, path: str) -> Any:
    """The value at `path` (`a.b[0].c[name=x,kind=y].d`, a key holding dots in quotes: `tables."x.json".rate`) in
    parsed JSON."""
    for quoted, plain, selectors in SEGMENT.findall(path):
        key = quoted or plain
        if not isinstance(data, dict) or key not in data:
            raise MarkerError(f"no key {key!r} in {path!r}")
        data = data[key]
        for selector in re.findall(r"\[([^\]]*)\]", selectors):
            data = select(data, selector, path)
    return data


def select(items: Any, selector: str, path: str) -> Any:
    """`items[3]`; the single dict of `items` whose fields equal every `field=value` of the selector; with a leading
    `?`, the list of every such dict."""
    if not isinstance(items, list):
        raise MarkerError(f"[{selector}] in {path!r} indexes something that is not a list")
    if selector.isdigit():
        if int(selector) >= len(items):
            raise MarkerError(f"[{selector}] in {path!r} is past the list's {len(items)} items")
        return items[int(selector)]
    parts = selector.removeprefix("?").split(",")
    if not all("=" in part for part in parts):
        raise MarkerError(f"[{selector}] in {path!r} is neither an index nor field=value conditions")
    wanted = dict(part.split("=", 1) for part in parts)
    found = [x for x in items if isinstance(x, dict) and all(str(x.get(k)) == v for k, v in wanted.items())]
    if selector.startswith("?"):
        return found
    if len(found) != 1:
        raise MarkerError(f"[{selector}] in {path!r} matches {len(found)} items, not one")
    return found[0]


def formatted(value: Any, form: str) -> str:
    """`value` written as `form` says (a format spec, `len`, `ci` or `ci-p`)."""
    if form == "len":
        if not isinstance(value, list):
            raise MarkerError(f"format len needs a list, not {value!r}")
        return str(len(value))
    if form in ("ci", "ci-p"):
        diff, low, high, p = comparison(value, form)
        return interval_text(diff, low, high, p if form == "ci-p" else None)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MarkerError(f"format {form} needs a number, not {value!r}")
    try:
        return format(round(value) if form.endswith("d") else value, form)
    except ValueError as exc:
        raise MarkerError(f"format {form!r}: {exc}") from exc


def comparison(value: Any, form: str) -> tuple[float, float, float, float]:
    """(difference, low, high, p) of a suite comparison (`diff`, `ci`, `p`) or a `paired_bootstrap` result."""
    if isinstance(value, dict) and {"diff", "ci", "p"} <= value.keys():
        return value["diff"], value["ci"][0], value["ci"][1], value["p"]
    if isinstance(value, dict) and {"mean_difference", "low", "high", "p_value"} <= value.keys():
        return value["mean_difference"], value["low"], value["high"], value["p_value"]
    raise MarkerError(f"format {form} needs a paired comparison (diff, ci, p), not {value!r}")


def fill_values(text: str, read: Callable[[str], Any]) -> str:
    """`text` with every value marker's text rewritten from `read(file)` (parsed JSON, memoised by the caller)."""

    def replace(match: re.Match[str]) -> str:
        opening, file, path, form, _, closing = match.groups()
        try:
            return opening + formatted(lookup(read(file), path), form) + closing
        except MarkerError as exc:
            raise MarkerError(f"{opening}: {exc}") from exc

    filled, count = MARKER.subn(replace, text)
    if count != text.count("<!-- value "):
        raise MarkerError(f"{text.count('<!-- value ') - count} value marker(s) not of the form "
                          "`<!-- value FILE PATH FORMAT -->TEXT<!-- /value -->` on one line")
    return filled


def json_reader(folder: Path) -> Callable[[str], Any]:
    """`read(file)` for `fill_values`: the parsed JSON of `folder / file`, each file read once."""
    cache: dict[str, Any] = {}

    def read(file: str) -> Any:
        if file not in cache:
            path = folder / file
            if not path.is_file():
                raise MarkerError(f"no results file {file}")
            cache[file] = json.loads(path.read_text())
        return cache[file]

    return read
