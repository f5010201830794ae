"""The encoding driver and content cache: only new or changed items are computed, interrupted runs resume,
missing modalities are masked, bad model outputs are errors."""

import numpy as np
import pyarrow as pa
import pytest

from mmgr.encoders.base import encode_items
from mmgr.encoders.cache import TextCache, VectorCache
from mmgr.errors import MmgrError


class CountingEncoder:
    """Deterministic fake: the vector of a text is derived from its characters; counts encoded inputs."""

    modality, model_id, version, dim = "text", "fake", "v1", 4

    def __init__(self, fail_on_call: int | None = None, output=None):
        self.calls, self.seen, self.fail_on_call, self.output = 0, [], fail_on_call, output

    def inputs(self, items):
        return [t or None for t in items["title"].to_pylist()]

    def content_key(self, text):
        return text.encode()

    def encode(self, batch):
        self.calls += 1
        if self.fail_on_call == self.calls:
            raise KeyboardInterrupt("killed")
        self.seen.extend(batch)
        if self.output is not None:
            return self.output(batch)
        return np.array([[len(t), ord(t[0]), ord(t[-1]), 1.0] for t in batch], dtype=np.float32)


def catalog(titles):
    return pa.table({"title": titles})


def test_missing_inputs_are_masked_zero_rows():
    features = encode_items(CountingEncoder(), catalog(["ab", "", "cd"]), progress=False)
    assert features.missing.tolist() == [False, True, False]
    assert features.vectors[1].tolist() == [0.0] * 4 and features.vectors[0, 0] == 2
    assert features.info["missing"] == 1


def test_second_run_computes_nothing_and_changes_only_recompute(tmp_path):
    cache = VectorCache(tmp_path)
    first = encode_items(CountingEncoder(), catalog(["a", "bb", "ccc"]), cache, progress=False)
    again = CountingEncoder()
    second = encode_items(again, catalog(["a", "bb", "ccc"]), cache, progress=False)
    assert again.calls == 0 and second.info["from_cache"] == 3
    np.testing.assert_array_equal(first.vectors, second.vectors)
    changed = CountingEncoder()
    encode_items(changed, catalog(["a", "bX", "ccc"]), cache, progress=False)
    assert changed.seen == ["bX"]


def test_interrupted_run_resumes_where_it_stopped(tmp_path):
    cache = VectorCache(tmp_path)
    titles = [f"item{i}" for i in range(10)]
    with pytest.raises(KeyboardInterrupt):
        encode_items(CountingEncoder(fail_on_call=3), catalog(titles), cache, chunk_size=3, progress=False)
    resumed = CountingEncoder()
    features = encode_items(resumed, catalog(titles), cache, chunk_size=3, progress=False)
    assert resumed.seen == titles[6:]                       # two chunks of 3 were cached before the kill
    reference = encode_items(CountingEncoder(), catalog(titles), progress=False)
    np.testing.assert_array_equal(features.vectors, reference.vectors)
    assert not list(tmp_path.glob("*.tmp"))


def test_nan_or_wrong_shape_output_is_an_error():
    nan = CountingEncoder(output=lambda batch: np.full((len(batch), 4), np.nan, dtype=np.float32))
    with pytest.raises(MmgrError, match="NaN"):
        encode_items(nan, catalog(["a"]), progress=False)
    short = CountingEncoder(output=lambda batch: np.zeros((len(batch), 3), dtype=np.float32))
    with pytest.raises(MmgrError, match="shape"):
        encode_items(short, catalog(["a"]), progress=False)


def test_text_cache_round_trip(tmp_path):
    cache = TextCache(tmp_path)
    cache.put([b"k" * 32, b"j" * 32], ["a caption", ["tag one", "tag two"]])
    assert TextCache(tmp_path).get([b"k" * 32, b"j" * 32, b"x" * 32]) == {
        b"k" * 32: "a caption", b"j" * 32: ["tag one", "tag two"]}
