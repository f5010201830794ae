"""Encoder throughput on this machine, on the real data: text over Beauty's 12,101 titles, images over the
1,419 MovieLens posters (end to end, JPEG decoding included), captions and interest tags over a 200-item sample,
and the content cache (a second pass over the same items) against a miss.

    python benchmarks/encoders.py [--only text,image,caption,interests]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from common import SHARED_DATA, write_result

from mmgr.config_encoders import CaptionConfig, ImageEncoderConfig, InterestConfig, TextEncoderConfig
from mmgr.data.formats.lcrec import read_lcrec
from mmgr.data.formats.p5 import read_p5
from mmgr.data.formats.recbole import read_recbole
from mmgr.encoders.base import encode_items
from mmgr.encoders.cache import TextCache, VectorCache

SAMPLE = 200


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def cache_pair(run, items: int, cache_dir: Path) -> dict:
    """Run once against an empty cache (miss) and once more (hit); items/s of both and their ratio."""
    (_, miss) = timed(lambda: run(cache_dir))
    (_, hit) = timed(lambda: run(cache_dir))
    return {"items": items, "items_per_second": items / miss, "cache_hit_items_per_second": items / hit,
            "cache_hit_speedup": miss / hit}


def bench_text() -> None:
    from mmgr.encoders.text import SentenceTextEncoder

    items = read_p5(SHARED_DATA / "amazon-beauty-2014").build().items
    cfg = TextEncoderConfig(fields=["title"])
    encoder, load = timed(lambda: SentenceTextEncoder(cfg))
    encoder.encode(["warm-up"] * cfg.batch_size)
    with tempfile.TemporaryDirectory() as tmp:
        metrics, wall = timed(lambda: cache_pair(
            lambda d: encode_items(encoder, items, VectorCache(d), progress=False), items.num_rows, Path(tmp)))
    metrics["model_load_seconds"] = load
    write_result("encoders", "amazon-beauty-2014", "text-all-MiniLM-L6-v2", metrics, wall_seconds=wall,
                 config=cfg.model_dump(), reference={
                     "source": "DESIGN.md: all-MiniLM-L6-v2 measured on this machine kind; the project's target",
                     "metrics": {"items_per_second": 177, "target_items_per_second": 150}})


def bench_image() -> None:
    """End to end (hashing, JPEG decoding, model, cache writes) for each way of running the model, in one run."""
    from mmgr.encoders.image import EfficientNetLite0

    items = read_recbole(SHARED_DATA / "movielens-100k-posters").build().items
    by_graph, wall = {}, 0.0
    for graph in ("eager", "compile"):
        cfg = ImageEncoderConfig(graph=graph)
        encoder, load = timed(lambda cfg=cfg: EfficientNetLite0(cfg))
        _, warm = timed(lambda e=encoder: e.encode([p for p in items["image"].to_pylist() if p][:e.cfg.batch_size]))
        with tempfile.TemporaryDirectory() as tmp:
            metrics, seconds = timed(lambda e=encoder, tmp=tmp: cache_pair(
                lambda d: encode_items(e, items, VectorCache(d), progress=False), 1419, Path(tmp)))
        by_graph[graph] = {**metrics, "model_load_seconds": load + warm}
        wall += seconds
    metrics = {**by_graph["compile"], "bf16": encoder.bf16,
               "by_graph": {g: {k: m[k] for k in ("items_per_second", "model_load_seconds")}
                            for g, m in by_graph.items()}}
    write_result("encoders", "movielens-100k-posters", "image-efficientnet-lite0", metrics, wall_seconds=wall,
                 config=ImageEncoderConfig(graph="compile").model_dump(), reference={
                     "source": "DESIGN.md: EfficientNet-Lite0 model-only (bf16, channels_last) on this machine kind; "
                               "the target is end to end including JPEG decoding (after loading the model); "
                               "metrics are torch.compile's, by_graph compares it with the eager model in the same "
                               "run (model_load_seconds includes compiling and the first batch)",
                     "metrics": {"model_only_items_per_second": 117, "target_items_per_second": 60}})


def bench_caption() -> None:
    from mmgr.encoders.captions import OfflineDescriber, caption_items

    items = read_recbole(SHARED_DATA / "movielens-100k-posters").build().items
    sample = items.filter(items["has_image"]).slice(0, SAMPLE)
    cfg = CaptionConfig()
    describer = OfflineDescriber(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        metrics, wall = timed(lambda: cache_pair(
            lambda d: caption_items(sample, describer, TextCache(d), progress=False), SAMPLE, Path(tmp)))
    example = caption_items(sample.slice(0, 3), describer, progress=False)[0]
    write_result("encoders", "movielens-100k-posters", "caption-offline-describer", metrics, wall_seconds=wall,
                 config=cfg.model_dump(), extra={"examples": example})


def bench_interests() -> None:
    from mmgr.encoders.interests import make_miner, mine_interests

    items = read_lcrec(SHARED_DATA / "amazon-scientific-2018").build().items.slice(0, SAMPLE)
    cfg = InterestConfig()
    miner, load = timed(lambda: make_miner(cfg))
    with tempfile.TemporaryDirectory() as tmp:
        metrics, wall = timed(lambda: cache_pair(
            lambda d: mine_interests(items, None, cfg, miner, TextCache(d), progress=False), SAMPLE, Path(tmp)))
    tags, info = mine_interests(items.slice(0, 5), None, cfg, miner, None, progress=False)
    metrics.update(model_load_seconds=load, empty_items_in_first_5=sum(1 for t in tags if not t))
    write_result("encoders", "amazon-scientific-2018", "interests-gemma3-270m", metrics, wall_seconds=wall,
                 config=cfg.model_dump(), extra={"examples": dict(zip(items["title"].to_pylist()[:5], tags,
                                                                       strict=True))})


BENCHES = {"text": bench_text, "image": bench_image, "caption": bench_caption, "interests": bench_interests}

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(BENCHES), help="comma-separated subset")
    for name in parser.parse_args().only.split(","):
        BENCHES[name]()
