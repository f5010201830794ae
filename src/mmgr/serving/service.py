"""The recommender a server or a batch job calls: item ids in, ranked items with titles out, through the engine's
ranker (the same decoding path as `mmgr evaluate`), with every request checked and bad input named.

A request gives a `history` of item ids (oldest first) or the `user_id` of a known user (their full history), `k`
and `exclude_seen`. It is ranked at the width one search gives for its `k` (`Ranker.searched`: a beam search's
`decoding.beam_size`, as evaluation decodes), its history's items are left out, and only a request left with fewer
than k items is ranked again, wide enough for k after the exclusion (k plus its history's distinct items). Requests
decoded together are grouped by what the ranker can rank together (`Ranker.batch_key`: one group for a single beam
search with a width per row or an exact ranker, one per width for fused lists), each ranked at its own width, so its
answer is the one it gets alone, whatever its batch.

With onboarding, the run's onboarded items (`mmgr.serving.store`) are replayed at start, and before each answer the
ones other servers on the run added since (`refresh`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from mmgr.errors import MmgrError, quoted
from mmgr.inference.ranker import Ranker
from mmgr.serving.onboarding import (
    LEGACY,
    NewItem,
    Onboarder,
    OnboardError,
    check_item_id,
    kept_image,
    load_onboarded,
    record,
    replayed,
    sweep_images,
)
from mmgr.serving.rwlock import ReadWriteLock
from mmgr.serving.store import STORE, Store


class RequestError(MmgrError):
    """A request the recommender refuses (the HTTP app answers 422 with its message)."""


@dataclass
class Request:
    history: list[str] | None = None
    user_id: str | None = None
    k: int = 10
    exclude_seen: bool = True
    line: int = 0                      # where it came from (batch files), for messages
    explain: bool | None = None        # add each item's `explanation`; None = the recommender's default


@dataclass
class Limits:
    max_k: int = 100
    max_history: int = 1000


@dataclass
class Recommender:
    ranker: Ranker
    limits: Limits = field(default_factory=Limits)
    onboarder: Onboarder | None = None         # with it, new items can be added (and earlier ones are replayed)
    explain: bool = False                      # default of requests that do not say (TriAlignGR: text from SIDs)

    def __post_init__(self) -> None:
        self._lock = ReadWriteLock()           # searches together (they only read), onboarding alone
        self._seq = 0                          # the newest stored onboarded item this server has applied
        self.item_ids: list[str] = []          # by catalog row; onboarding only appends rows
        self.titles: list[str] = []
        self.index: dict[str, int] = {}
        self.users = {user: row for row, user in enumerate(self.ranker.data.user_ids)}
        self.sequences = self.ranker.data.dataset.item_sequences()
        self.store = Store(self.onboarder.run.path / STORE) if self.onboarder is not None else None
        if self.store is not None:
            self._import_json()
            self._catch_up()
        self._index_new_rows()

    def _index_new_rows(self) -> None:
        """Index the catalog rows after those indexed so far (all of them at start, then the onboarded ones)."""
        rows = self.ranker.data.dataset.items.slice(len(self.item_ids))
        ids = rows["item_id"].to_pylist()
        self.index.update(zip(ids, range(len(self.item_ids), len(self.item_ids) + len(ids)), strict=True))
        self.item_ids += ids
        self.titles += rows["title"].to_pylist()

    def refresh(self) -> None:
        """Apply the items that other servers on this run onboarded since this one last looked."""
        if self.store is not None and self.store.last() > self._seq:
            with self._lock.writing():
                self._catch_up()

    def _catch_up(self) -> None:
        """Replay the stored items after `_seq` (their recorded codes; nothing is re-encoded)."""
        rows = self.store.since(self._seq)
        if rows:
            where = f"{self.store.path}: item"
            self.ranker = self._with([(f"{where} {quoted(e['item']['item_id'])} (seq {n})", e) for n, e in rows])
            self._seq = rows[-1][0]
            self._index_new_rows()

    def _with(self, entries: list[tuple[str, dict[str, Any]]]) -> Ranker:
        """The ranker with recorded items appended; `entries` are (where it is recorded, record)."""
        codes = getattr(self.ranker.data, "codes", {})
        for where, entry in entries:
            codes = replayed(codes, entry, where)
        rows = pa.concat_tables([NewItem(**entry["item"]).table(self.onboarder.run) for _, entry in entries])
        return self.ranker.extended(codes, rows)

    def _import_json(self) -> None:
        """Move the items of an `onboarded.json` (how earlier versions kept them) into the store, once; the file is
        then renamed `onboarded.json.imported`."""
        path = self.onboarder.run.path / LEGACY
        if not path.is_file():
            return
        entries = load_onboarded(self.onboarder.run)
        with self.store.writing():
            if entries and not self.store.flag(LEGACY.name):
                self._catch_up()
                tables = self._with([(f"{path}: entry {n}", e) for n, e in enumerate(entries, 1)]).decoding_tables()
                for row, entry in enumerate(entries, start=-len(entries)):          # the last rows of every table
                    self.store.add(entry, {target: table[row].tolist() for target, table in tables.items()})
                self.store.set_flag(LEGACY.name)
        path.rename(path.with_name(path.name + ".imported"))

    def sweep_images(self) -> int:
        """Delete the images in serving/images/ that no onboarded item refers to; returns how many."""
        if self.store is None:
            return 0
        with self.store.writing():                  # no other server is between writing an image and its item
            return sweep_images(self.onboarder.run, self.store.images())

    def onboard(self, item: NewItem, image: bytes | None = None) -> dict[str, Any]:
        """Add a new item: codes from the run's encoders and tokenizers, recommendable at once, kept in the store
        (with `image`, the checked bytes of the file `item.image` names, written in the item's transaction and
        removed if it fails)."""
        if self.onboarder is None or self.store is None:
            raise OnboardError("this server was started without onboarding")
        check_item_id(item.item_id)
        if not item.title.strip():
            raise RequestError("a new item needs a non-empty title")
        with self._lock.writing(), self.store.writing():
            self._catch_up()                        # what other servers onboarded decides this item's codes
            if item.item_id in self.index:
                raise OnboardError(f"item id {quoted(item.item_id)} is already in the catalog")
            with kept_image(self.onboarder.run, item, image):
                codes = self.onboarder.extend(getattr(self.ranker.data, "codes", {}), item)
                ranker = self.ranker.extended(codes, item.table(self.onboarder.run))
                entry = record(item, codes)
                seq = self.store.add(entry, {target: table[-1].tolist()
                                             for target, table in ranker.decoding_tables().items()})
                self.store.commit()
            self.ranker, self._seq = ranker, seq
            self._index_new_rows()
        return {"item_id": item.item_id, "index": self.index[item.item_id], "codes": entry["codes"],
                "missing": entry["missing"]}

    def item(self, item_id: str) -> dict[str, Any]:
        self.refresh()
        row = self.index.get(item_id)
        if row is None:
            raise KeyError(item_id)
        record = self.ranker.data.dataset.items.slice(row, 1).to_pylist()[0]
        return {key: record[key] for key in ("item_id", "title", "description", "brand", "categories")
                if key in record}

    def history_of(self, request: Request) -> tuple[str, np.ndarray]:
        """(user key, item indices) of a request, or a RequestError naming what is wrong."""
        if self.explains(request) and not self.ranker.explains:
            raise RequestError("this run's model cannot explain items (explain needs a TriAlignGR run: "
                               "training.objective=tmt with a sid->title, sid->interests or sid->visdesc task)")
        if (request.history is None) == (request.user_id is None):
            raise RequestError("give exactly one of `history` (item ids) or `user_id` (a known user)")
        if not 1 <= request.k <= self.limits.max_k:
            raise RequestError(f"k must be between 1 and {self.limits.max_k}, got {request.k}")
        if request.user_id is not None:
            row = self.users.get(request.user_id)
            if row is None:
                raise RequestError(f"unknown user_id {quoted(request.user_id)}; send their `history` instead")
            return request.user_id, self.sequences[row]
        history = request.history or []
        if not history:
            raise RequestError("history is empty: give at least one item id")
        if len(history) > self.limits.max_history:
            raise RequestError(f"history has {len(history)} items; at most {self.limits.max_history} are accepted")
        unknown = [item for item in history if item not in self.index]
        if unknown:
            shown = ", ".join(quoted(u) for u in unknown[:5]) + (f" (+{len(unknown) - 5} more)" if len(unknown) > 5
                                                                 else "")
            raise RequestError(f"unknown item ids: {shown}")
        return "", np.array([self.index[item] for item in history], dtype=np.int64)

    def recommend(self, requests: list[Request]) -> list[list[dict[str, Any]] | RequestError]:
        """Ranked items per request (a RequestError in place of a refused request), as the module docstring says."""
        self.refresh()
        out: list[list[dict[str, Any]] | RequestError] = []
        good: dict[int, tuple[str, np.ndarray]] = {}
        for i, request in enumerate(requests):
            try:
                good[i] = self.history_of(request)
                out.append([])
            except RequestError as exc:
                out.append(exc)
        needs = {i: self._need(requests[i], good[i][1]) for i in good}
        widths = {i: min(len(self.item_ids), self.ranker.searched(requests[i].k, needs[i])) for i in good}
        with self._lock.reading():
            for i, (items, scores) in self._rank(good, widths).items():
                out[i] = self._ranked(requests[i], good[i][1], items, scores)
            # the history took beams of the first search: again, wide enough for k after leaving it out
            wider = {i: needs[i] for i in good if len(out[i]) < requests[i].k and needs[i] > widths[i]}
            for i, (items, scores) in self._rank(good, wider).items():
                out[i] = self._ranked(requests[i], good[i][1], items, scores)
        explained = [out[i] for i in good if self.explains(requests[i])]
        if explained:
            self._explain(explained)  # type: ignore[arg-type]
        return out

    def _rank(self, good: dict[int, tuple[str, np.ndarray]], widths: dict[int, int]
              ) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Each request's (items, scores) at its width; one ranking per group of requests that share a
        `Ranker.batch_key`."""
        groups: dict[int, list[int]] = {}
        for i, width in widths.items():
            groups.setdefault(self.ranker.batch_key(width), []).append(i)
        ranked = {}
        for group in groups.values():
            items, scores = self.ranker.rank([good[i][0] for i in group], [good[i][1] for i in group],
                                             [widths[i] for i in group])
            ranked.update({i: (items[row], scores[row]) for row, i in enumerate(group)})
        return ranked

    def _need(self, request: Request, history: np.ndarray) -> int:
        """How many ranked items a request needs: its k plus the history items it leaves out."""
        return min(len(self.item_ids), request.k + (len(set(history.tolist())) if request.exclude_seen else 0))

    def _ranked(self, request: Request, history: np.ndarray, items: np.ndarray,
                scores: np.ndarray) -> list[dict[str, Any]]:
        seen = set(history.tolist()) if request.exclude_seen else set()
        ranked = [(int(item), float(score)) for item, score in zip(items, scores, strict=True)
                  if item >= 0 and int(item) not in seen][:request.k]
        return [{"rank": r + 1, "item_id": self.item_ids[item], "title": self.titles[item], "score": score}
                for r, (item, score) in enumerate(ranked)]

    def explains(self, request: Request) -> bool:
        return self.explain if request.explain is None else request.explain

    def _explain(self, results: list[list[dict[str, Any]]]) -> None:
        """Each ranked row's `explanation`, the distinct items explained once."""
        items = sorted({self.index[row["item_id"]] for rows in results for row in rows})
        with self._lock.reading():
            texts = dict(zip(items, self.ranker.explain(items), strict=True))
        for rows in results:
            for row in rows:
                row["explanation"] = texts[self.index[row["item_id"]]]
