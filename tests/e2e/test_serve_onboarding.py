"""Onboarding items into a served run: at once and after restarts, refused without leftovers, whole or absent after a
kill, shared between servers and server processes, and ranked where they belong."""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import time

import httpx
import pytest

from mmgr.serving.launch import free_port, stop_server
from mmgr.serving.store import STORE, Store
from tests.helpers import copy_run, ids, mmgr, onboard, picture, png, start


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
    process, url = start(run)
    try:
        for attempt, delay in enumerate((0.0, 0.05, 0.2, 0.5)):
            before = httpx.get(f"{url}/health").json()["items"]
            sender = threading.Thread(target=_try_onboard, args=(url, f"crash-{attempt}"), daemon=True)
            sender.start()
            time.sleep(delay)
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
            process, url = start(run)            # checks this attempt, then is the next attempt's server
            item = httpx.get(f"{url}/items/crash-{attempt}")
            assert item.status_code in (200, 404)
            if item.status_code == 200:
                assert item.json()["title"] == f"Crash test item {attempt}"
            assert httpx.get(f"{url}/health").json()["items"] == before + (item.status_code == 200)
            assert len(httpx.post(f"{url}/recommend", json={"history": ["i0001"], "k": 5}).json()["items"]) == 5
            outcomes.append(item.status_code)
    finally:
        stop_server(process)
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
        deadline = time.monotonic() + 120               # on busy cores the second process may still load its model
        while time.monotonic() < deadline and len(process_starts(httpx.get(f"{url}/metrics").text)) < 2:
            time.sleep(0.5)
        with httpx.Client() as one, httpx.Client() as other:          # two connections: two processes may answer
            for client in (one, other):
                answers = [client.post(f"{url}/recommend", json={"history": h, "k": 5}).json()["items"]
                           for h in histories]
                for got, want in zip(answers, alone, strict=True):   # the same model and decoding in each (scores
                    assert ids(got) == ids(want)                      # summed over other thread counts)
                    assert [r["score"] for r in got] == pytest.approx([r["score"] for r in want], abs=1e-4)
            for history in histories * 3:                             # a new connection each: either process
                assert httpx.post(f"{url}/recommend", json={"history": history, "k": 5}).status_code == 200
            for _ in range(4):                                         # /metrics sums the processes, whichever answers
                text = httpx.get(f"{url}/metrics").text
                assert 'mmgr_requests_total{endpoint="/recommend",status="200"} 15.0' in text, text
                assert "mmgr_batch_size_count 15.0" in text
                starts = process_starts(text)
                assert len(starts) == 2 and all('pid="' in line for line in starts)
            assert onboard(url, "shared-mug", "Norvik ceramic mug").status_code == 201
            deadline = time.monotonic() + 5                            # every process sees it within the poll
            while time.monotonic() < deadline and not all(
                    c.get(f"{url}/items/shared-mug").status_code == 200 for c in (one, other) for _ in range(4)):
                time.sleep(0.2)
            assert all(c.get(f"{url}/items/shared-mug").status_code == 200 for c in (one, other) for _ in range(4))
    finally:
        stop_server(process)


def process_starts(metrics: str) -> list[str]:
    """The start-time lines of the server processes that /metrics sums."""
    return [line for line in metrics.splitlines() if line.startswith("mmgr_process_start_time_seconds{")]


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
