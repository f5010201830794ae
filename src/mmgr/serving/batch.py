"""Offline batch scoring: `mmgr recommend RUN --input users.jsonl --output recs.jsonl`.

Each input line is a JSON object with `user_id` (a known user) or `history` (item ids, oldest first), and optionally
`k` and `exclude_seen`. Each output line is `{"line": n, "user_id"/"history": ..., "items": [...]}`, or
`{"line": n, "error": "..."}` for a refused request (counted, never dropped). The output is written atomically.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mmgr.errors import MmgrError
from mmgr.io import write_bytes_atomic
from mmgr.progress import progress_bar
from mmgr.serving.service import Recommender, Request, RequestError

FIELDS = ("user_id", "history", "k", "exclude_seen")


def read_requests(path: Path, k: int) -> list[Request]:
    """The requests of a JSONL file; a malformed line is an error naming the file, line and field."""
    requests = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise MmgrError(f"{path}: no such input file") from None
    except UnicodeDecodeError as exc:
        raise MmgrError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise MmgrError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise MmgrError(f"{path}:{number}: expected a JSON object with user_id or history")
        unknown = sorted(set(record) - set(FIELDS))
        if unknown:
            raise MmgrError(f"{path}:{number}: unknown field {unknown[0]!r} (fields: {', '.join(FIELDS)})")
        history = record.get("history")
        if history is not None and not (isinstance(history, list) and all(isinstance(i, str) for i in history)):
            raise MmgrError(f"{path}:{number}: field 'history' must be a list of item id strings")
        count = record.get("k", k)
        if not isinstance(count, int) or isinstance(count, bool):
            raise MmgrError(f"{path}:{number}: field 'k' must be an integer, got {count!r}")
        requests.append(Request(history, record.get("user_id"), count, bool(record.get("exclude_seen", True)),
                                number))
    return requests


def score_file(recommender: Recommender, source: Path, target: Path, k: int, batch_size: int = 256,
               progress: bool = True) -> dict[str, Any]:
    """Rank every request of `source` into `target`; returns counts (scored, refused)."""
    requests = read_requests(source, k)
    rows, refused = [], 0
    with progress_bar("recommending", total=len(requests), enabled=progress) as advance:
        for start in range(0, len(requests), batch_size):
            chunk = requests[start:start + batch_size]
            for request, result in zip(chunk, recommender.recommend(chunk), strict=True):
                who = {"user_id": request.user_id} if request.user_id is not None else {"history": request.history}
                if isinstance(result, RequestError):
                    refused += 1
                    rows.append({"line": request.line, **who, "error": str(result)})
                else:
                    rows.append({"line": request.line, **who, "items": result})
            advance(len(chunk))
    write_bytes_atomic(target, "".join(json.dumps(row) + "\n" for row in rows).encode())
    return {"requests": len(requests), "scored": len(requests) - refused, "refused": refused, "output": str(target)}
