"""Serving's pure pieces: item id and image checks, the onboarding file's and database's checks, the orphan sweep,
client-safe messages, start-up auth rules, and the app's answer to a handler that fails unexpectedly."""

from __future__ import annotations

import io
import json
from types import SimpleNamespace

import pytest

from mmgr.errors import MmgrError, quoted
from mmgr.rundir import RunDir
from mmgr.serving.app import api_key_from_env, check_exposure, create_app, is_json, is_loopback, public
from mmgr.serving.onboarding import BadUpload, OnboardError, check_image, check_item_id, load_onboarded, sweep_images
from mmgr.serving.store import Store


def test_quoted_cuts_long_text():
    assert quoted("abc") == "'abc'"
    assert quoted("x" * 500_000) == repr("x" * 80) + "..."


@pytest.mark.parametrize("item_id", ["", "   ", "a/b", "tab\there", "bell\x07", "zero\u200bwidth", "x" * 201])
def test_item_ids_that_cannot_be_served_are_refused(item_id):
    with pytest.raises(BadUpload, match="item_id"):
        check_item_id(item_id)


@pytest.mark.parametrize("item_id", ["new-mug", "Café crème 42", "x" * 200, "a b.c_d:e"])
def test_printable_item_ids_without_a_slash_are_accepted(item_id):
    check_item_id(item_id)


def test_an_image_claiming_too_many_pixels_is_refused():
    from PIL import Image

    wide = io.BytesIO()
    Image.new("L", (10_000, 5_001)).save(wide, format="PNG")      # past MAX_IMAGE_PIXELS, under PIL's own limit
    with pytest.raises(BadUpload, match="pixels"):
        check_image(wide.getvalue())
    small = io.BytesIO()
    Image.new("RGB", (4, 4)).save(small, format="PNG")
    assert check_image(small.getvalue()).startswith("serving/images/")


def entry(item_id: str = "x", **item) -> dict:
    return {"item": {"item_id": item_id, "title": "X", **item}, "codes": {}, "missing": {}}


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "expected an object with an `items` list"),
    (json.dumps({"items": [entry(), 3]}), "entry 2: expected an object with `item`, `codes` and `missing`"),
    (json.dumps({"items": [entry(colour="red")]}), "entry 1: `item` needs string item_id and title"),
    (json.dumps({"items": [entry(categories="a,b")]}), "entry 1: `item` needs"),
    (json.dumps({"items": [entry(title=None)]}), "entry 1: `item` needs"),
    (json.dumps({"items": [entry(image="/etc/passwd")]}), "entry 1 ('x'): image '/etc/passwd' is not a file in"),
    (json.dumps({"items": [entry(image="serving/images/../../model.safetensors")]}), "is not a file in"),
    (json.dumps({"items": [entry(image="serving/images/..")]}), "is not a file in"),
])
def test_a_damaged_onboarding_file_is_an_error_naming_it(tmp_path, content, message):
    (tmp_path / "serving").mkdir()
    (tmp_path / "serving" / "onboarded.json").write_text(content)
    with pytest.raises(MmgrError, match="onboarded.json: ") as refused:
        load_onboarded(RunDir(tmp_path))
    assert message in str(refused.value)


def test_sweep_removes_only_images_no_onboarded_item_refers_to(tmp_path):
    images = tmp_path / "serving" / "images"
    images.mkdir(parents=True)
    for name in ("kept.png", "orphan.png", ".orphan.png.123.tmp"):
        (images / name).write_bytes(b"x")
    assert sweep_images(RunDir(tmp_path), {"serving/images/kept.png"}) == 2
    assert [p.name for p in images.iterdir()] == ["kept.png"]
    assert sweep_images(RunDir(tmp_path / "elsewhere"), set()) == 0


def test_the_store_refuses_a_taken_id_or_tuple_and_keeps_the_order(tmp_path):
    store = Store(tmp_path / "serving" / "onboarded.sqlite")
    with store.writing():
        first = store.add(entry("a", image="serving/images/a.png"), {"item": [1, 2, 3]})
    with store.writing():
        second = store.add(entry("b"), {"item": [1, 2, 4]})
    for item_id, tokens, taken in (("a", [5, 5, 5], "its id"), ("c", [1, 2, 4], "its token tuple")):
        with pytest.raises(OnboardError, match=f"item '{item_id}': {taken}"), store.writing():
            store.add(entry(item_id), {"item": tokens})
    again = Store(tmp_path / "serving" / "onboarded.sqlite")            # another server on the run
    assert [(seq, e["item"]["item_id"]) for seq, e in again.since(0)] == [(first, "a"), (second, "b")]
    assert again.last() == second and again.since(second) == [] and again.images() == {"serving/images/a.png"}


@pytest.mark.parametrize(("record", "message"), [
    ("{oops", "item 'x' (seq 1): its record is not valid JSON"),
    (json.dumps(entry("x", image="/etc/passwd")), "item 'x' (seq 1) ('x'): image '/etc/passwd' is not a file in"),
    (json.dumps(entry("y")), "item 'x' (seq 1): its record is of item 'y'"),
])
def test_a_damaged_store_record_is_an_error_naming_the_file_and_item(tmp_path, record, message):
    import sqlite3

    path = tmp_path / "onboarded.sqlite"
    Store(path).close()
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO items (item_id, record) VALUES ('x', ?)", (record,))
    with pytest.raises(MmgrError, match="onboarded.sqlite: ") as refused:
        Store(path).since(0)
    assert message in str(refused.value)


def test_a_file_that_is_not_the_store_is_refused_naming_it(tmp_path):
    import sqlite3

    garbage, other = tmp_path / "garbage.sqlite", tmp_path / "other.sqlite"
    garbage.write_bytes(b"not a database" * 100)
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE items (x)")
    for path in (garbage, other):
        with pytest.raises(MmgrError, match=f"{path}: not an onboarding database"):
            Store(path)


def test_public_messages_show_no_server_path(tmp_path):
    run = tmp_path / "run"
    message = f"{run}/tokenizers/text.json: bad; cache /home/me/.cache/hf/model.bin missing; use JPEG/PNG, GET /items"
    shown = public(message, run)
    assert shown == ("RUN/tokenizers/text.json: bad; cache <server path> missing; use JPEG/PNG, GET /items")
    assert public(f"{tmp_path}/runx/a: no", run) == "<server path>: no"


def test_an_empty_or_unusable_api_key_is_refused(monkeypatch):
    monkeypatch.delenv("MMGR_API_KEY", raising=False)
    assert api_key_from_env() is None
    for bad, message in (("", "set but empty"), ("  ", "set but empty"), (" key", "printable ASCII"),
                         ("kéy", "printable ASCII")):
        monkeypatch.setenv("MMGR_API_KEY", bad)
        with pytest.raises(MmgrError, match=message):
            api_key_from_env()
    monkeypatch.setenv("MMGR_API_KEY", "s3cret")
    assert api_key_from_env() == "s3cret"


@pytest.mark.parametrize(("host", "loopback"), [("127.0.0.1", True), ("127.8.0.1", True), ("::1", True),
                                                ("[::1]", True), ("localhost", True), ("0.0.0.0", False),
                                                ("::", False), ("10.0.0.5", False), ("example.org", False)])
def test_a_host_other_than_loopback_needs_a_key_or_an_explicit_flag(host, loopback):
    assert is_loopback(host) is loopback
    check_exposure(host, "s3cret", allow_no_auth=False)
    check_exposure(host, None, allow_no_auth=True)
    if not loopback:
        with pytest.raises(MmgrError, match="--allow-no-auth"):
            check_exposure(host, None, allow_no_auth=False)


def test_json_content_types():
    assert is_json(None) and is_json("application/json; charset=utf-8") and is_json("application/problem+json")
    assert not is_json("text/plain") and not is_json("application/x-www-form-urlencoded")


def test_a_handler_that_fails_unexpectedly_is_a_counted_json_500():
    from fastapi.testclient import TestClient

    def broken(item_id: str) -> dict:
        raise RuntimeError(f"secret internals of {item_id} at /srv/runs/x/model.safetensors")

    recommender = SimpleNamespace(recommend=lambda requests: [], onboarder=None, item=broken, item_ids=[], users={})
    client = TestClient(create_app(recommender), raise_server_exceptions=False)     # type: ignore[arg-type]
    reply = client.get("/items/i0001")
    assert reply.status_code == 500 and reply.json() == {"error": "internal server error"}
    assert 'mmgr_requests_total{endpoint="/items/{item_id}",status="500"} 1.0' in client.get("/metrics").text


def catalog_ranker(count: int) -> SimpleNamespace:
    """What the Recommender reads of a ranker's data: a catalog of `count` items (i0, i1, ...), one user."""
    import pyarrow as pa

    items = pa.table({"item_id": [f"i{n}" for n in range(count)], "title": [f"item {n}" for n in range(count)]})
    dataset = SimpleNamespace(items=items, item_sequences=lambda: [[0]])
    return SimpleNamespace(data=SimpleNamespace(dataset=dataset, user_ids=["u0"]))


def test_onboarded_rows_are_indexed_without_reindexing_the_catalog():
    from mmgr.serving.service import Recommender

    recommender = Recommender(catalog_ranker(3))                      # type: ignore[arg-type]
    ids, index = recommender.item_ids, recommender.index
    assert ids == ["i0", "i1", "i2"] and index == {"i0": 0, "i1": 1, "i2": 2} and recommender.users == {"u0": 0}
    recommender.ranker = catalog_ranker(5)                            # two items onboarded: rows appended
    recommender._index_new_rows()
    assert recommender.item_ids is ids and recommender.index is index   # the catalog's entries were kept as they were
    assert ids == ["i0", "i1", "i2", "i3", "i4"] and index["i4"] == 4 and recommender.titles[3] == "item 3"


def test_a_request_is_searched_at_the_evaluation_width_and_again_only_when_its_history_fills_it():
    """A ranker that ranks items 0, 1, 2, ... in order (a stand-in for a beam search of width 5): a request whose
    history leaves k items of the first search is answered from it; one whose history takes them is ranked again,
    wide enough for k after the exclusion; both as they are alone, in one batch or apart."""
    import numpy as np

    from mmgr.serving.service import Recommender, Request

    calls: list[list[int]] = []

    def rank(user_ids, histories, widths):
        calls.append(list(widths))
        top = max(widths)
        items = np.array([[i if i < w else -1 for i in range(top)] for w in widths])
        return items, -np.arange(top, dtype=np.float32)[None].repeat(len(widths), 0)

    ranker = catalog_ranker(12)
    ranker.rank, ranker.searched, ranker.batch_key = rank, lambda k, need: max(k, 5), lambda k: 0
    recommender = Recommender(ranker)                                        # type: ignore[arg-type]
    light = Request(["i9"], k=3)                     # first search 0-4, i9 not among them: answered from it
    filling = Request(["i0", "i1", "i3"], k=3)       # leaves 2 and 4 of 0-4: ranked again at 3 + 3
    unseen = Request(["i0", "i1", "i3"], k=3, exclude_seen=False)
    alone = [recommender.recommend([request])[0] for request in (light, filling, unseen)]
    assert calls == [[5], [5], [6], [5]]
    assert [[r["item_id"] for r in rows] for rows in alone] == [["i0", "i1", "i2"], ["i2", "i4", "i5"],
                                                                 ["i0", "i1", "i2"]]
    calls.clear()
    assert recommender.recommend([light, filling, unseen]) == alone
    assert calls == [[5, 5, 5], [6]]                 # one search for the batch, one more for the filled request


def test_a_handler_that_fails_after_answering_is_counted_and_not_answered_twice():
    import asyncio

    from mmgr.serving.app import Guard, Metrics

    async def half_answered(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise RuntimeError("failed while streaming")

    metrics, sent = Metrics(), []

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "http.request", "body": b""}

    scope = {"type": "http", "method": "GET", "path": "/items/x", "headers": []}
    asyncio.run(Guard(half_answered, None, 1 << 20, metrics, None)(scope, receive, send))
    assert [m["type"] for m in sent] == ["http.response.start"]             # no second start
    assert metrics.requests.labels("unmatched", "500")._value.get() == 1     # counted as the failure it was
