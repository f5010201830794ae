"""`mmgr serve` as a real HTTP server on 127.0.0.1 (requests, limits, errors, batching, auth), and batch scoring
with `mmgr recommend --input`; onboarding is in test_serve_onboarding.py."""

from __future__ import annotations

import concurrent.futures
import json

import httpx
import pytest

from mmgr.serving.launch import stop_server
from tests.helpers import batch_count, ids, mmgr, onboard, png, refusal, start


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
    assert httpx.post(f"{server}/recommend", json={"history": ["i0001"], "k": 3}).status_code == 200
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
    together = recommender.recommend([*shallow, Request(["i0001"], k=30, exclude_seen=False)])
    assert len(calls) == 1                             # one beam search, a width per request
    assert [ids(rows) for rows in together[:len(shallow)]] == [ids(rows) for rows in alone]
    assert [r["score"] for rows in together[:len(shallow)] for r in rows] == pytest.approx(     # batched kernels
        [r["score"] for rows in alone for r in rows], rel=1e-5)                                 # round differently
    assert len(together[-1]) == 30



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

