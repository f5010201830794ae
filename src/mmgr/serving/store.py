"""The onboarded items of a run or bundle: an SQLite database in WAL mode, `serving/onboarded.sqlite`, that every
server on the run shares.

`items` holds one row per onboarded item in the order they were onboarded (`seq`): its id (unique) and its record
(fields, codes per modality, missing flags) as JSON. `tuples` holds the item's token tuple in each decoding table,
unique per table. So no two servers can both acknowledge one id or give two items one tuple: the second insert fails
and its onboarding is refused. Servers onboard in turn, each inside one write transaction (`writing`): replay the
rows other servers added, assign codes, write the image, insert, commit; and before answering they replay what the
others added since (`last` tells them when), so an item onboarded on one server is served by all.

A file that is not such a database stops the start with one line naming it.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mmgr.errors import MmgrError, quoted
from mmgr.serving.onboarding import OnboardError, check_entry

STORE = Path("serving") / "onboarded.sqlite"
SCHEMA_VERSION = 1
SCHEMA = ("CREATE TABLE items (seq INTEGER PRIMARY KEY AUTOINCREMENT, item_id TEXT NOT NULL UNIQUE, "
          "record TEXT NOT NULL)",
          "CREATE TABLE tuples (target TEXT NOT NULL, tokens TEXT NOT NULL, seq INTEGER NOT NULL REFERENCES "
          "items(seq), UNIQUE (target, tokens))",
          "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
BUSY_TIMEOUT_S = 60.0                    # how long a server waits for another's onboarding to commit


class Store:
    """One server's connection to the run's onboarded items (usable from any thread, one call at a time)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.RLock()
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            with self.writing():
                self._create()
        except sqlite3.DatabaseError as exc:
            raise MmgrError(f"{path}: not an onboarding database ({exc}); restore it or move it away to start "
                            "without the onboarded items") from None

    def _create(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, SCHEMA_VERSION):
            raise MmgrError(f"{self.path}: onboarding database version {version}, this mmgr reads version "
                            f"{SCHEMA_VERSION}")
        if version == 0:
            for statement in SCHEMA:
                self._db.execute(statement)
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @contextmanager
    def writing(self) -> Iterator[None]:
        """The block as one write transaction, taken in turn with every other server on the run: committed at its
        end (or at `commit`), rolled back if it fails."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                if self._db.in_transaction:
                    self._db.rollback()
                raise
            if self._db.in_transaction:
                self._db.commit()

    def commit(self) -> None:
        with self._lock:
            self._db.commit()

    def last(self) -> int:
        """The `seq` of the newest item (0 when there is none)."""
        with self._lock:
            return self._db.execute("SELECT coalesce(max(seq), 0) FROM items").fetchone()[0]

    def since(self, seq: int) -> list[tuple[int, dict[str, Any]]]:
        """(seq, record) of the items after `seq`, oldest first; a damaged record is an error naming it."""
        with self._lock:
            rows = self._db.execute("SELECT seq, item_id, record FROM items WHERE seq > ? ORDER BY seq",
                                    (seq,)).fetchall()
        return [(number, self._record(number, item_id, text)) for number, item_id, text in rows]

    def _record(self, seq: int, item_id: str, text: str) -> dict[str, Any]:
        where = f"{self.path}: item {quoted(item_id)} (seq {seq})"
        try:
            entry = json.loads(text)
        except (json.JSONDecodeError, TypeError) as exc:
            raise MmgrError(f"{where}: its record is not valid JSON ({exc})") from None
        check_entry(entry, where)
        if entry["item"]["item_id"] != item_id:
            raise MmgrError(f"{where}: its record is of item {quoted(entry['item']['item_id'])}")
        return entry

    def add(self, entry: dict[str, Any], tuples: dict[str, list[int]]) -> int:
        """Insert an item and its token tuple per decoding table (inside `writing`); returns its seq. A taken id or
        tuple is an OnboardError."""
        item_id = entry["item"]["item_id"]
        with self._lock:
            try:
                seq = self._db.execute("INSERT INTO items (item_id, record) VALUES (?, ?)",
                                       (item_id, json.dumps(entry))).lastrowid
                self._db.executemany("INSERT INTO tuples (target, tokens, seq) VALUES (?, ?, ?)",
                                     [(target, " ".join(map(str, tokens)), seq) for target, tokens in tuples.items()])
            except sqlite3.IntegrityError as exc:
                taken = "id" if "items.item_id" in str(exc) else "token tuple"
                raise OnboardError(f"item {quoted(item_id)}: its {taken} was just taken by an item onboarded on "
                                   "another server; try again") from None
        return int(seq)

    def images(self) -> set[str]:
        """The image paths the onboarded items refer to."""
        return {entry["item"]["image"] for _, entry in self.since(0) if entry["item"].get("image")}

    def flag(self, key: str) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM meta WHERE key = ?", (key,)).fetchone() is not None

    def set_flag(self, key: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, '1')", (key,))

    def backup(self, target: Path) -> None:
        """A consistent copy of the database (committed items only) at `target`."""
        target.parent.mkdir(parents=True, exist_ok=True)
        copy = sqlite3.connect(target)
        try:
            with self._lock:
                self._db.backup(copy)
        finally:
            copy.close()

    def close(self) -> None:
        with self._lock:
            self._db.close()
