"""`mmgr serve` as a real HTTP server on 127.0.0.1, and batch scoring with `mmgr recommend --input`."""

from __future__ import annotations

import concurrent.futures
import contextlib
import io
import json
import shutil
import struct
import time
import zlib

import httpx
import pytest

from mmgr.errors import MmgrError
from mmgr.serving.launch import free_port, start_server, stop_server
from mmgr.serving.store import STORE, Store
from tests.helpers import mmgr, run_args


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("serve")
    run = folder / "run"
    mmgr(*run_args("tiger", run, folder / "cache"), "model.user_buckets=20")
    return run


@pytest.fixture(scope="module")
def multimodal(tmp_path_factory):
    """A tiny late-fusion (text + image) run of the synthetic world, where every item has an image."""
    folder = tmp_path_factory.mktemp("serve-lf")
    run = folder / "run"
    mmgr(*run_args("mgr-lf", run, folder / "cache"))
    return run


def start(run, *options: str, env: dict | None = None, log=None):
    return start_server(run, options, env, log=log)


def refusal(run, *options: str, env: dict | None = None) -> str:
    """The error of a `mmgr serve` that refuses to start (a server that starts is stopped, and the test fails)."""
    with pytest.raises(MmgrError) as refused:
        process, _ = start(run, *options, env=env)
        stop_server(process)
    return str(refused.value)


def copy_run(trained, tmp_path):
    run = tmp_path / "copy"
    shutil.copytree(trained, run, ignore=shutil.ignore_patterns("serving"))
    return run


@pytest.fixture(scope="module")
def server(trained):
    process, url = start(trained, "--max-wait-ms", "50")
    yield url
    process.terminate()
    process.wait(timeout=10)


def test_recommend_by_history_returns_distinct_unseen_items_with_titles(server):
    history = ["i0001", "i0002", "i0003"]
    reply = httpx.post(f"{server}/recommend", json={"history": history, "k": 5}).json()["items"]
    assert len(reply) == 5 and len({r["item_id"] for r in reply}) == 5
    assert not {r["item_id"] for r in reply} & set(history) and all(r["title"] for r in reply)
    assert [r["rank"] for r in reply] == [1, 2, 3, 4, 5]
    assert all(a["score"] >= b["score"] for a, b in zip(reply, reply[1:], strict=False))
    seen = httpx.post(f"{server}/recommend", json={"history": history, "k": 20, "exclude_seen": False}).json()
    assert len(seen["items"]) == 20


def test_recommend_for_a_known_user_matches_the_cli(server, trained):
    reply = httpx.post(f"{server}/recommend", json={"user_id": "u0003", "k": 5, "exclude_seen": False}).json()
    shown = mmgr("recommend", str(trained), "--user", "u0003", "--k", "5").stdout
    positions = [shown.index(r["item_id"]) for r in reply["items"]]
    assert positions == sorted(positions)                                  # same items, same order


@pytest.mark.parametrize(("body", "message"), [
    ({"history": ["i0001", "nope", "zzz"], "k": 5}, "unknown item ids: 'nope', 'zzz'"),
    ({"history": ["i0001"], "k": 0}, "k must be between 1 and 100"),
    ({"history": ["i0001"], "k": 1000}, "k must be between 1 and 100"),
    ({"history": []}, "history is empty"),
    ({"k": 3}, "exactly one of"),
    ({"history": ["i0001"], "user_id": "u0001"}, "exactly one of"),
    ({"user_id": "stranger"}, "unknown user_id 'stranger'"),
    ({"history": ["i0001"] * 1001}, "at most 1000"),
    ({"history": "i0001"}, "invalid request: history"),
    ({"history": ["i0001"], "colour": "red"}, "invalid request: colour"),
    ({"history": ["i0001"], "explain": True}, "cannot explain items"),          # a TIGER run writes no text
    ({"history": ["i0001"], "k": True}, "invalid request: k"),                  # strict types, nothing coerced
    ({"history": ["i0001"], "k": "5"}, "invalid request: k"),
    ({"history": ["i0001"], "k": 5.0}, "invalid request: k"),
    ({"history": ["i0001"], "exclude_seen": "no"}, "invalid request: exclude_seen"),
    ({"history": ["i0001"], "explain": 0}, "invalid request: explain"),
])
def test_bad_requests_get_a_422_with_a_message(server, body, message):
    response = httpx.post(f"{server}/recommend", json=body)
    assert response.status_code == 422 and message in response.json()["error"], response.text


def test_malformed_json_and_oversized_bodies_are_4xx_never_500(server):
    response = httpx.post(f"{server}/recommend", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 422 and "invalid request" in response.json()["error"]
    response = httpx.post(f"{server}/recommend", content=b"x" * (2 << 20), headers={"content-type": "application/json"})
    assert response.status_code == 413


def test_a_body_that_is_not_json_gets_a_415(server):
    response = httpx.post(f"{server}/recommend", content=b'{"history": ["i0001"]}',
                          headers={"content-type": "text/plain"})
    assert response.status_code == 415 and "application/json" in response.json()["error"]
    form = httpx.post(f"{server}/recommend", data={"history": "i0001"})
    assert form.status_code == 415


def test_unknown_ids_are_echoed_cut_short(server):
    long = "x" * 500_000
    for reply in (httpx.post(f"{server}/recommend", json={"history": ["i0001", long]}),
                  httpx.post(f"{server}/recommend", json={"user_id": long}),
                  httpx.get(f"{server}/items/{'y' * 5000}")):
        assert reply.status_code in (404, 422) and len(reply.content) < 300, reply.content[:300]
        assert "x" * 80 + "'..." in reply.json()["error"] or "y" * 80 + "'..." in reply.json()["error"]


def png(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels, with (almost) no pixel data: under 80 bytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def picture(shade: int) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (8, 8), (shade, 0, 0)).save(out, format="PNG")
    return out.getvalue()


def test_a_decompression_bomb_is_refused_with_a_4xx(server):
    bomb = onboard(server, "bomb", "Huge picture", image=png(100_000, 100_000))
    assert bomb.status_code in (413, 422) and "pixels" in bomb.json()["error"], bomb.text


def test_a_chunked_body_without_a_length_is_cut_off_at_the_limit(server):
    def chunks(head: bytes, total: int, tail: bytes):
        yield head
        for _ in range(total // 65536):
            yield b"x" * 65536
        yield tail

    response = httpx.post(f"{server}/recommend", content=chunks(b'{"history": ["i0001"], "pad": "', 2 << 20, b'"}'),
                          headers={"content-type": "application/json"})
    assert response.status_code == 413 and "too large" in response.json()["error"]
    part = b'--b\r\nContent-Disposition: form-data; name="image"; filename="x.png"\r\nContent-Type: image/png\r\n\r\n'
    upload = httpx.post(f"{server}/items", content=chunks(part, 8 << 20, b"\r\n--b--\r\n"),
                        headers={"content-type": "multipart/form-data; boundary=b"})
    assert upload.status_code == 413, upload.text
    small = httpx.post(f"{server}/recommend", content=iter([b'{"history": ["i0001"], ', b'"k": 5}']),
                       headers={"content-type": "application/json"})
    assert small.status_code == 200 and len(small.json()["items"]) == 5


def test_items_health_and_metrics(server):
    item = httpx.get(f"{server}/items/i0004").json()
    assert item["item_id"] == "i0004" and item["title"]
    missing = httpx.get(f"{server}/items/nope")
    assert missing.status_code == 404 and "nope" in missing.json()["error"]
    assert httpx.get(f"{server}/health").json() == {"status": "ok", "items": 40, "users": 30}
    text = httpx.get(f"{server}/metrics").text
    assert 'mmgr_requests_total{endpoint="/recommend",status="200"}' in text
    assert "mmgr_request_seconds_bucket" in text and "mmgr_batch_size_count" in text


def test_concurrent_requests_are_batched_and_answered_as_alone(server):
    bodies = [{"history": [f"i{i:04d}", f"i{i + 1:04d}"], "k": 5} for i in range(12)]
    alone = [httpx.post(f"{server}/recommend", json=b).json()["items"] for b in bodies]
    before = batch_count(server)
    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        together = list(pool.map(lambda b: httpx.post(f"{server}/recommend", json=b, timeout=30).json()["items"],
                                 bodies))
    assert [[r["item_id"] for r in a] for a in together] == [[r["item_id"] for r in a] for a in alone]
    assert batch_count(server) - before < 12                               # some requests shared a beam search


def test_two_decoding_workers_answer_as_alone(trained, server):
    bodies = [{"history": [f"i{i:04d}", f"i{i + 2:04d}"], "k": 4 + i % 3} for i in range(12)]
    alone = [ids(httpx.post(f"{server}/recommend", json=b).json()["items"]) for b in bodies]
    process, url = start(trained, "--workers", "2", "--max-wait-ms", "20", "--max-batch", "3", "--no-onboarding")
    try:
        with concurrent.futures.ThreadPoolExecutor(12) as pool:
            together = list(pool.map(lambda b: ids(httpx.post(f"{url}/recommend", json=b, timeout=30).json()["items"]),
                                     bodies))
    finally:
        stop_server(process)
    assert together == alone


def test_a_request_batched_with_a_deeper_one_gets_its_answer_alone(trained):
    import dataclasses

    from mmgr.inference.ranker import load_ranker
    from mmgr.rundir import RunDir
    from mmgr.serving.service import Recommender, Request

    run = RunDir(trained)
    ranker = load_ranker(run, run.config())
    narrow = dataclasses.replace(ranker, decoding=ranker.decoding.model_copy(update={"beam_size": 3}))
    recommender = Recommender(narrow)                  # a narrow beam: a deeper search finds other items
    shallow = [Request([f"i{i:04d}", f"i{i + 1:04d}"], k=3, exclude_seen=False) for i in range(1, 30, 3)]
    alone = [recommender.recommend([request])[0] for request in shallow]
    calls = []
    recommender.ranker = dataclasses.replace(narrow)
    recommender.ranker.rank = lambda *args: calls.append(args) or narrow.rank(*args)   # type: ignore[method-assign]
    together = recommender.recommend([*shallow, Request(["i0001"], k=30)])
    assert len(calls) == 1                             # one beam search, a width per request
    assert [ids(rows) for rows in together[:len(shallow)]] == [ids(rows) for rows in alone]
    assert [r["score"] for rows in together[:len(shallow)] for r in rows] == pytest.approx(     # batched kernels
        [r["score"] for rows in alone for r in rows], rel=1e-5)                                 # round differently
    assert len(together[-1]) == 30


def ids(rows: list[dict]) -> list[str]:
    return [row["item_id"] for row in rows]


def batch_count(url: str) -> float:
    line = next(x for x in httpx.get(f"{url}/metrics").text.splitlines() if x.startswith("mmgr_batch_size_count"))
    return float(line.split()[-1])


def test_api_key_guards_every_endpoint_but_health(trained, tmp_path):
    log = tmp_path / "serve.log"
    process, url = start(trained, "--no-batching", env={"MMGR_API_KEY": "s3cret"}, log=log)
    try:
        assert httpx.get(f"{url}/health").status_code == 200
        assert httpx.post(f"{url}/recommend", json={"history": ["i0001"]}).status_code == 401
        assert httpx.get(f"{url}/items/i0001").status_code == 401
        latin = httpx.get(f"{url}/items/i0001", headers={"x-api-key": "s3cr\xe9t".encode("latin-1")})
        assert latin.status_code == 401
        ok = httpx.post(f"{url}/recommend", json={"history": ["i0001"]}, headers={"x-api-key": "s3cret"})
        assert ok.status_code == 200 and len(ok.json()["items"]) == 10
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert "auth on" in log.read_text()


def test_start_up_refuses_an_empty_key_and_an_open_host_without_one(trained):
    empty = refusal(trained, env={"MMGR_API_KEY": ""})
    assert "MMGR_API_KEY is set but empty" in empty and "Traceback" not in empty
    exposed = refusal(trained, "--host", "0.0.0.0")
    assert "--allow-no-auth" in exposed and "Traceback" not in exposed


def test_batch_scoring_writes_every_request_and_names_bad_lines(trained, tmp_path):
    source, target = tmp_path / "users.jsonl", tmp_path / "recs.jsonl"
    source.write_text('{"user_id": "u0001"}\n{"history": ["i0001", "i0005"], "k": 3}\n{"history": ["nope"]}\n')
    out = mmgr("recommend", str(trained), "--input", str(source), "--output", str(target), "--k", "4",
               "--no-progress").stdout
    rows = [json.loads(line) for line in target.read_text().splitlines()]
    assert [r["line"] for r in rows] == [1, 2, 3] and "refused" in out
    assert len(rows[0]["items"]) == 4 and len(rows[1]["items"]) == 3 and "nope" in rows[2]["error"]
    source.write_text('{"user_id": "u0001"}\n{"history": ["i0001"], "k": "ten"}\n')
    bad = mmgr("recommend", str(trained), "--input", str(source), "--output", str(target), check=False)
    assert bad.returncode == 1 and f"{source}:2: field 'k'" in bad.stderr and "Traceback" not in bad.stderr


def onboard(url: str, item_id: str, title: str, **extra):
    files = {"image": ("x.png", extra.pop("image"), "image/png")} if "image" in extra else None
    return httpx.post(f"{url}/items", data={"item_id": item_id, "title": title, **extra}, files=files, timeout=60)


def test_onboarded_item_is_recommendable_at_once_and_survives_a_restart(trained):
    process, url = start(trained)
    try:
        added = onboard(url, "new-mug", "Norvik ceramic mug", brand="Norvik", categories="kitchen, mugs")
        assert added.status_code == 201, added.text
        assert len(added.json()["codes"]["text"]) == 3 and added.json()["index"] == 40
        assert httpx.get(f"{url}/items/new-mug").json()["categories"] == ["kitchen", "mugs"]
        everything = httpx.post(f"{url}/recommend", json={"history": ["i0001"], "k": 41, "exclude_seen": False})
        assert "new-mug" in {r["item_id"] for r in everything.json()["items"]}     # in the trie, decodable
        assert httpx.post(f"{url}/recommend", json={"history": ["new-mug"], "k": 3}).status_code == 200
        assert onboard(url, "new-mug", "again").status_code == 409
        assert onboard(url, "i0002", "taken").status_code == 409
        assert onboard(url, "", "no id").status_code == 422
        bad = onboard(url, "new-pic", "A picture", image=b"not an image")
        assert bad.status_code == 422 and "not a readable picture" in bad.json()["error"]
    finally:
        process.terminate()
        process.wait(timeout=10)
    process, url = start(trained)
    try:
        assert httpx.get(f"{url}/items/new-mug").json()["title"] == "Norvik ceramic mug"
        assert httpx.get(f"{url}/health").json()["items"] == 41
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_refused_onboardings_write_no_image_and_orphans_are_swept_at_start(trained, tmp_path):
    run, log = copy_run(trained, tmp_path), tmp_path / "serve.log"
    images = run / "serving" / "images"
    process, url = start(run, log=log)
    try:
        assert onboard(url, "pic", "A picture", image=picture(1)).status_code == 201
        kept = sorted(images.iterdir())
        assert onboard(url, "pic", "Same id", image=picture(2)).status_code == 409
        assert onboard(url, "i0002", "A catalog id", image=picture(3)).status_code == 409
        assert sorted(images.iterdir()) == kept and len(kept) == 1
        for bad in ("a/b", "bell\x07", "x" * 201):
            refused = onboard(url, bad, "A bad id", image=picture(4))
            assert refused.status_code == 422 and "item_id" in refused.json()["error"], refused.text
        assert onboard(url, "bomb", "Bomb", image=png(100_000, 100_000)).status_code == 422
        assert sorted(images.iterdir()) == kept
    finally:
        stop_server(process)
    assert "auth off" in log.read_text()
    (images / "orphan.png").write_bytes(picture(5))
    tokenizer = run / "tokenizers" / "text.json"
    tokenizer.write_text(json.dumps({**json.loads(tokenizer.read_text()), "format_version": 99}))
    process, url = start(run, log=log)
    try:
        assert "removed 1 orphan image" in log.read_text() and sorted(images.iterdir()) == kept
        broken = onboard(url, "late", "Onboarded with a damaged tokenizer", image=picture(6))
        assert broken.status_code == 422 and "RUN/tokenizers/text.json" in broken.json()["error"], broken.text
        assert str(tmp_path) not in broken.text and sorted(images.iterdir()) == kept
    finally:
        stop_server(process)


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "not valid JSON"),
    ('{"items": {"a": 1}}', "expected an object with an `items` list"),
    ('{"items": [{"item": {"item_id": "x", "title": "X", "image": "../../../etc/passwd"}, "codes": {}, '
     '"missing": {}}]}', "entry 1 ('x'): image '../../../etc/passwd' is not a file in serving/images/"),
])
def test_a_damaged_onboarding_file_stops_the_start_with_one_line(trained, tmp_path, content, message):
    run = copy_run(trained, tmp_path)
    (run / "serving").mkdir()
    (run / "serving" / "onboarded.json").write_text(content)
    refused = mmgr("serve", str(run), "--port", str(free_port()), check=False)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr, refused.stderr[-2000:]
    assert f"{run / 'serving' / 'onboarded.json'}: " in refused.stderr and message in refused.stderr, refused.stderr


def test_a_corrupt_onboarding_database_stops_the_start_with_one_line(trained, tmp_path):
    run = copy_run(trained, tmp_path)
    (run / "serving").mkdir()
    (run / STORE).write_bytes(b"not a database, just some bytes" * 100)
    refused = mmgr("serve", str(run), "--port", str(free_port()), check=False)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr, refused.stderr[-2000:]
    assert f"{run / STORE}: not an onboarding database" in refused.stderr, refused.stderr


def test_items_of_an_onboarded_json_are_imported_once(trained, tmp_path):
    run = copy_run(trained, tmp_path)
    process, url = start(run)
    try:
        assert onboard(url, "old-mug", "Norvik ceramic mug").status_code == 201
    finally:
        stop_server(process)
    recorded = [entry for _, entry in Store(run / STORE).since(0)]
    for path in run.joinpath("serving").glob("onboarded.sqlite*"):
        path.unlink()
    (run / "serving" / "onboarded.json").write_text(json.dumps({"format_version": 1, "items": recorded}))
    for _ in range(2):                                          # imported at the first start, not again
        process, url = start(run)
        try:
            assert httpx.get(f"{url}/items/old-mug").json()["title"] == "Norvik ceramic mug"
            assert httpx.get(f"{url}/health").json()["items"] == 41
        finally:
            stop_server(process)
        assert not (run / "serving" / "onboarded.json").exists()
        assert (run / "serving" / "onboarded.json.imported").is_file()


def test_a_server_killed_while_onboarding_keeps_the_whole_item_or_none(trained, tmp_path):
    import signal
    import threading

    run = copy_run(trained, tmp_path)
    outcomes = []
    for attempt, delay in enumerate((0.0, 0.05, 0.2, 0.5)):
        process, url = start(run)
        before = httpx.get(f"{url}/health").json()["items"]
        sender = threading.Thread(target=_try_onboard, args=(url, f"crash-{attempt}"), daemon=True)
        sender.start()
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        process, url = start(run)
        try:
            item = httpx.get(f"{url}/items/crash-{attempt}")
            assert item.status_code in (200, 404)
            if item.status_code == 200:
                assert item.json()["title"] == f"Crash test item {attempt}"
            assert httpx.get(f"{url}/health").json()["items"] == before + (item.status_code == 200)
            assert len(httpx.post(f"{url}/recommend", json={"history": ["i0001"], "k": 5}).json()["items"]) == 5
            outcomes.append(item.status_code)
        finally:
            process.terminate()
            process.wait(timeout=10)
    kept = [entry["item"]["item_id"] for _, entry in Store(run / STORE).since(0)]
    assert kept == [f"crash-{i}" for i, o in enumerate(outcomes) if o == 200]


@pytest.mark.parametrize("recipe", ["trained", "multimodal"])
def test_an_exact_copy_of_a_popular_item_ranks_next_to_it(request, recipe, tmp_path):
    from collections import Counter
    from pathlib import Path

    import numpy as np

    from mmgr.inference.ranker import load_ranker
    from mmgr.rundir import RunDir
    from mmgr.serving.onboarding import NewItem, Onboarder, check_image
    from mmgr.serving.service import Recommender, Request

    run = RunDir(copy_run(request.getfixturevalue(recipe), tmp_path))
    recommender = Recommender(load_ranker(run, run.config()), onboarder=Onboarder(run, run.config()))
    items, sequences = recommender.ranker.data.dataset.items.to_pylist(), recommender.sequences
    compared = 0
    for popular, _ in Counter(int(i) for s in sequences for i in s).most_common(5):
        original = items[popular]
        image = Path(original["image"]).read_bytes()
        copy = NewItem(f"copy-{original['item_id']}", original["title"], original["description"], original["brand"],
                       original["categories"], check_image(image))
        recommender.onboard(copy, image)
        for sequence in sequences:
            ends = np.nonzero(sequence == popular)[0]
            if len(ends):
                history = [recommender.item_ids[i] for i in sequence[:ends[-1] + 1]]
                order = ids(recommender.recommend([Request(history, k=50, exclude_seen=False)])[0])
                if order.index(original["item_id"]) < 10:
                    compared += 1
                    assert order.index(copy.item_id) <= order.index(original["item_id"]) + 1, (history, order)
    assert compared >= 8


def test_two_servers_on_one_run_share_its_onboarded_items_safely(trained, tmp_path):
    run = copy_run(trained, tmp_path)
    (first, a), (second, b) = start(run), start(run)
    try:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            twins = list(pool.map(lambda url: onboard(url, "twin", "Twin ceramic mug"), (a, b)))
            assert sorted(r.status_code for r in twins) == [201, 409], [r.text for r in twins]
            assert "twin" in next(r for r in twins if r.status_code == 409).json()["error"]
            jobs = [(url, f"mug-{i}", f"Norvik ceramic mug {i}") for i, url in enumerate([a, b] * 4)]
            replies = list(pool.map(lambda job: onboard(*job), jobs))
        assert [r.status_code for r in replies] == [201] * len(jobs), [r.text for r in replies]
        added = {"twin": next(r for r in twins if r.status_code == 201).json()}
        added |= {job[1]: reply.json() for job, reply in zip(jobs, replies, strict=True)}
        assert len({tuple(entry["codes"]["text"]) for entry in added.values()}) == len(added)   # no shared tuple
        for url, other in ((a, b), (b, a)):                      # each serves what the other onboarded, at once
            theirs = [job[1] for job in jobs if job[0] == other]
            assert all(httpx.get(f"{url}/items/{item}").status_code == 200 for item in theirs)
            reply = httpx.post(f"{url}/recommend", json={"history": theirs, "k": 49, "exclude_seen": False})
            assert reply.status_code == 200 and set(added) <= set(ids(reply.json()["items"])), reply.text
    finally:
        stop_server(first)
        stop_server(second)
    process, url = start(run)                                   # the next start replays every acknowledged item
    try:
        assert httpx.get(f"{url}/health").json()["items"] == 40 + len(added)
        assert all(httpx.get(f"{url}/items/{item}").status_code == 200 for item in added)
    finally:
        stop_server(process)


def test_server_processes_answer_as_one_server_and_share_onboarded_items(trained, tmp_path):
    run = copy_run(trained, tmp_path)
    log = tmp_path / "serve.log"
    histories = [["i0001"], ["i0003", "i0007"], ["i0010", "i0002", "i0005"]]
    single, url = start(run, "--no-onboarding")
    try:
        alone = [httpx.post(f"{url}/recommend", json={"history": h, "k": 5}).json()["items"] for h in histories]
    finally:
        stop_server(single)
    process, url = start(run, "--processes", "2", log=log)
    try:
        assert "2 processes x 1 decoding worker" in log.read_text()
        with httpx.Client() as one, httpx.Client() as other:          # two connections: two processes may answer
            for client in (one, other):
                answers = [client.post(f"{url}/recommend", json={"history": h, "k": 5}).json()["items"]
                           for h in histories]
                for got, want in zip(answers, alone, strict=True):   # the same model and decoding in each (scores
                    assert ids(got) == ids(want)                      # summed over other thread counts)
                    assert [r["score"] for r in got] == pytest.approx([r["score"] for r in want], abs=1e-4)
            assert onboard(url, "shared-mug", "Norvik ceramic mug").status_code == 201
            deadline = time.monotonic() + 5                            # every process sees it within the poll
            while time.monotonic() < deadline and not all(
                    c.get(f"{url}/items/shared-mug").status_code == 200 for c in (one, other) for _ in range(4)):
                time.sleep(0.2)
            assert all(c.get(f"{url}/items/shared-mug").status_code == 200 for c in (one, other) for _ in range(4))
    finally:
        stop_server(process)


def _try_onboard(url: str, item_id: str) -> None:
    with contextlib.suppress(httpx.TransportError):      # the server may die mid-request: that is the test
        onboard(url, item_id, f"Crash test item {item_id.split('-')[1]}")


def test_an_item_without_an_image_joins_a_run_whose_items_all_have_images(multimodal):
    import pyarrow.parquet as pq

    assert all(pq.read_table(multimodal / "items.parquet", columns=["has_image"])["has_image"].to_pylist())
    process, url = start(multimodal)
    try:
        added = onboard(url, "no-picture", "Plain linen towel", categories="bath")
        assert added.status_code == 201, added.text
        assert added.json()["missing"] == {"text": False, "image": True}
        assert httpx.get(f"{url}/items/no-picture").json()["title"] == "Plain linen towel"
        everything = httpx.post(f"{url}/recommend", json={"history": ["i0001"], "k": 41, "exclude_seen": False})
        assert "no-picture" in ids(everything.json()["items"])                  # in the trie, decodable
        assert httpx.post(f"{url}/recommend", json={"history": ["no-picture"], "k": 3}).status_code == 200
    finally:
        stop_server(process)
