"""The catalog-scale benchmark's pure parts: the synthetic catalog's codes (skewed, colliding, made unique by the
append rule) and the targets' met / not met."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    """benchmarks/catalog_scale.py, loaded by path (it imports its sibling `common`)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(ROOT / "benchmarks"))
        spec = importlib.util.spec_from_file_location("benchmarks_catalog_scale", ROOT / "benchmarks" /
                                                      "catalog_scale.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return module


def test_sampled_codes_are_seeded_skewed_and_collide(bench):
    codes = bench.sampled_codes(20_000, skew=0.8, seed=1)
    assert codes.shape == (20_000, 3) and codes.min() >= 0 and codes.max() < 256
    assert np.array_equal(codes, bench.sampled_codes(20_000, skew=0.8, seed=1))
    assert not np.array_equal(codes, bench.sampled_codes(20_000, skew=0.8, seed=2))
    _, counts = np.unique(codes, axis=0, return_counts=True)
    assert counts.max() > 1                                     # collisions occur
    first = np.bincount(codes[:, 0], minlength=256)
    assert first.max() > 5 * first.mean()                      # skewed, not uniform
    uniform = bench.sampled_codes(20_000, skew=0.0, seed=1)
    assert np.unique(uniform, axis=0, return_counts=True)[1].max() < counts.max()


def test_catalog_codes_are_unique_tuples_numbered_by_the_append_rule(bench):
    codes = bench.catalog_codes(20_000, skew=0.8, seed=0)
    assert codes.codes.shape == (20_000, 4) and not codes.missing.any()
    assert len(np.unique(codes.codes, axis=0)) == 20_000                       # collision-free
    assert codes.info["collisions"] == "append" and codes.sizes[:3] == [256, 256, 256]
    assert codes.sizes[3] > codes.codes[:, 3].max()                          # the level holds every number
    for key in map(tuple, codes.codes[codes.codes[:, 3] > 0][:50, :3]):     # a group numbers its items 0, 1, ...
        group = codes.codes[(codes.codes[:, :3] == key).all(axis=1), 3]
        assert group.tolist() == list(range(len(group)))
    stats = bench.code_stats(codes)
    assert 0 < stats["collision_rate"] < 0.5 and stats["largest_collision_group"] > 1


def row(items: int, p50: float, p99: float, build: float, peak: int | None, onboard: float) -> dict:
    return {"items": items, "p50_ms": p50, "p99_ms": p99, "build_seconds": build, "build_peak_rss_delta_bytes": peak,
            "onboard_median_ms": onboard}


def test_targets_compare_the_largest_catalog_with_the_smallest(bench):
    met = bench.targets([row(10_000, 10, 20, 0.1, 10**7, 30), row(1_000_000, 19, 39, 50, 19 * 10**8, 99)])
    assert all(target["met"] for target in met.values())
    assert met["latency_within_2x"]["items"] == [10_000, 1_000_000] and met["latency_within_2x"]["p99_ratio"] == 1.95
    missed = bench.targets([row(10_000, 10, 20, 0.1, 10**7, 30), row(1_000_000, 10, 41, 61, None, 101)])
    assert not any(target["met"] for target in missed.values())


def test_sizes_are_sorted_distinct_counts(bench):
    assert bench.catalog_sizes("100000,10000,10000") == [10_000, 100_000]
    for bad in ("10k", "500"):
        with pytest.raises(argparse.ArgumentTypeError):
            bench.catalog_sizes(bad)
