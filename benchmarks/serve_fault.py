"""Fault test of item onboarding: `mmgr serve BUNDLE` is killed (SIGKILL) while it onboards a new item, restarted,
and checked: the catalog holds the whole item or none of it, an item whose onboarding was acknowledged (201) is
never lost, the onboarding file stays readable, and recommendations still work.

    python benchmarks/serve_fault.py [--trials 20] [--seed 0]

The bundle is the synthetic TIGER of `benchmarks/serve_load.py` (trained and exported once, reused), copied to a
scratch folder. Each trial starts a fresh server, sends one `POST /items` (title, description, categories and a
PNG image) and kills the server after a seeded delay drawn uniformly from [0, 2 x the first-onboarding time of a
fresh server] (calibrated once at the start), so kills land before, during and after the item is written. Writes
benchmarks/results/serve-synthetic-fault.json.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from serve_load import trained_bundle  # noqa: E402

from mmgr.serving.launch import start_server, stop_server  # noqa: E402

OPTIONS = ("--max-wait-ms", "1")


def png(seed: int) -> bytes:
    """A small seeded RGB picture as PNG bytes (seed >= -1: the calibration item is -1)."""
    pixels = np.random.default_rng(seed + 1).integers(0, 256, (48, 48, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def fields(trial: int) -> dict[str, str]:
    return {"item_id": f"fault-{trial}", "title": f"Fault test item {trial}", "description": "written while killed",
            "categories": "fault, test"}


def onboard(url: str, trial: int, replies: dict[int, int]) -> None:
    """POST /items for the trial's item; its status lands in `replies` if the server answers before dying."""
    with contextlib.suppress(httpx.TransportError):
        reply = httpx.post(f"{url}/items", data=fields(trial), files={"image": ("x.png", png(trial), "image/png")},
                           timeout=60)
        replies[trial] = reply.status_code


def first_onboarding_seconds(bundle: Path) -> float:
    """How long a fresh server takes to onboard its first item (loads the encoder), for the kill delays."""
    process, url = start_server(bundle, OPTIONS)
    try:
        started = time.perf_counter()
        replies: dict[int, int] = {}
        onboard(url, -1, replies)
        if replies.get(-1) != 201:
            raise SystemExit(f"calibration onboarding failed: {replies}")
        return time.perf_counter() - started
    finally:
        stop_server(process)


def check(url: str, trial: int, before: int, acknowledged: bool) -> dict[str, Any]:
    """After the restart: is the trial's item whole, absent, or damaged; do recommendations work?"""
    item = httpx.get(f"{url}/items/fault-{trial}", timeout=30)
    count = httpx.get(f"{url}/health", timeout=30).json()["items"]
    expected = fields(trial)
    whole = item.status_code == 200 and item.json().get("title") == expected["title"] and item.json().get(
        "categories") == ["fault", "test"] and count == before + 1
    none = item.status_code == 404 and count == before
    history = [f"fault-{trial}"] if whole else ["i0001"]
    reply = httpx.post(f"{url}/recommend", json={"history": history, "k": 10}, timeout=60)
    return {"trial": trial, "outcome": "whole" if whole else "none" if none else "damaged",
            "acknowledged": acknowledged, "lost_after_ack": acknowledged and not whole,
            "recommend_ok": reply.status_code == 200 and len(reply.json()["items"]) == 10}


def trial_run(bundle: Path, trial: int, delay: float) -> dict[str, Any]:
    process, url = start_server(bundle, OPTIONS)
    try:
        before = httpx.get(f"{url}/health", timeout=30).json()["items"]
    except BaseException:
        stop_server(process)
        raise
    replies: dict[int, int] = {}
    sender = threading.Thread(target=onboard, args=(url, trial, replies), daemon=True)
    sender.start()
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    sender.join(timeout=30)
    started = time.perf_counter()
    try:
        process, url = start_server(bundle, OPTIONS)
    except Exception as exc:                     # a restart that fails is the worst outcome: record it
        return {"trial": trial, "delay_s": round(delay, 4), "outcome": "restart_failed", "error": str(exc)[-300:],
                "acknowledged": replies.get(trial) == 201, "lost_after_ack": replies.get(trial) == 201,
                "recommend_ok": False}
    restart = time.perf_counter() - started
    try:
        return {**check(url, trial, before, replies.get(trial) == 201), "delay_s": round(delay, 4),
                "restart_s": round(restart, 3)}
    finally:
        stop_server(process)


def onboarding_file_ok(bundle: Path) -> bool:
    path = bundle / "serving" / "onboarded.json"
    try:
        return not path.exists() or isinstance(json.loads(path.read_text())["items"], list)
    except (json.JSONDecodeError, KeyError):
        return False


def orphan_images(bundle: Path) -> int:
    """Stored pictures that no onboarded item names (an upload killed before its item was recorded)."""
    path = bundle / "serving" / "onboarded.json"
    named = {e["item"]["image"] for e in json.loads(path.read_text())["items"]} if path.exists() else set()
    return sum(1 for p in (bundle / "serving" / "images").glob("*")
               if p.relative_to(bundle).as_posix() not in named) if (bundle / "serving" / "images").is_dir() else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    wall = time.perf_counter()
    source = trained_bundle("synthetic")
    with tempfile.TemporaryDirectory() as scratch:
        bundle = Path(scratch) / "bundle"
        shutil.copytree(source, bundle, ignore=shutil.ignore_patterns("serving"))
        calibration = first_onboarding_seconds(bundle)
        delays = np.random.default_rng(args.seed).uniform(0, 2 * calibration, args.trials)
        rows = []
        for trial, delay in enumerate(delays.tolist()):
            rows.append(trial_run(bundle, trial, delay))
            print(json.dumps(rows[-1]), flush=True)
        file_ok, orphans = onboarding_file_ok(bundle), orphan_images(bundle)
    outcomes = [row["outcome"] for row in rows]
    metrics = {"trials": len(rows), "whole": outcomes.count("whole"), "none": outcomes.count("none"),
               "damaged": outcomes.count("damaged"), "restart_failed": outcomes.count("restart_failed"),
               "acknowledged": sum(row["acknowledged"] for row in rows),
               "lost_after_ack": sum(row["lost_after_ack"] for row in rows),
               "recommend_ok": sum(row["recommend_ok"] for row in rows), "onboarding_file_readable": file_ok,
               "orphan_images": orphans, "first_onboarding_s": round(calibration, 3), "rows": rows}
    config = {"bundle": str(source), "server": list(OPTIONS), "trials": args.trials, "seed": args.seed,
              "kill": "SIGKILL", "delay": f"uniform [0, 2 x {calibration:.3f} s]"}
    common.write_result("serve", "synthetic", "fault", metrics, wall_seconds=time.perf_counter() - wall,
                        config=config, reference={"target": "damaged 0, restart_failed 0, lost_after_ack 0"})


if __name__ == "__main__":
    main()
