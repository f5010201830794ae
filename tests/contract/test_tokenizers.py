"""Every registered tokenizer passes the same checks (RecTools-style contract tests)."""

from __future__ import annotations

import numpy as np
import pytest

from mmgr.encoders.base import Features
from mmgr.errors import MmgrError
from mmgr.tokenizers import rq_kmeans, rqvae  # noqa: F401 - register the tokenizers
from mmgr.tokenizers.base import TOKENIZERS, load_tokenizer
from mmgr.tokenizers.collisions import collision_rate
from mmgr.tokenizers.pipeline import assign_new, tokenize_features

SMALL = {  # fast settings per registered tokenizer; a new tokenizer must be added here
    "rq-kmeans": {"levels": 2, "codebook_size": 8, "seed": 0},
    "rq-vae": {"levels": 2, "codebook_size": 8, "seed": 0, "epochs": 15, "batch_size": 128, "hidden": [32],
               "e_dim": 8},
}


def make(name: str, **changes):
    return TOKENIZERS.get(name)(**{**SMALL[name], **changes})


@pytest.fixture(scope="module")
def clustered() -> tuple[np.ndarray, np.ndarray]:
    """600 items in 6 well-separated clusters of a 16-d space, and their cluster labels."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(6, 16)) * 4
    labels = np.repeat(np.arange(6), 100)
    return (centres[labels] + rng.normal(size=(600, 16))).astype(np.float32), labels


def test_every_registered_tokenizer_is_covered():
    assert sorted(SMALL) == TOKENIZERS.names()


@pytest.fixture(scope="module", params=sorted(SMALL))
def fitted(request, clustered):
    return request.param, make(request.param).fit(clustered[0])


def test_shapes(fitted, clustered):
    name, tokenizer = fitted
    x = clustered[0]
    codes = tokenizer.transform(x)
    assert codes.shape == (600, 2) and codes.dtype == np.int64 and codes.min() >= 0 and codes.max() < 8
    assert tokenizer.inverse_transform(codes).shape == (600, 16)
    assert tokenizer.inverse_transform(codes[:, :1]).shape == (600, 16)
    candidates = tokenizer.candidates(x[:5], 3)
    assert candidates.shape == (5, 3) and (candidates[:, 0] == codes[:5, -1]).all()


def test_refit_with_the_same_seed_is_identical(fitted, clustered):
    name, tokenizer = fitted
    np.testing.assert_array_equal(make(name).fit(clustered[0]).transform(clustered[0]),
                                  tokenizer.transform(clustered[0]))


def test_save_load_changes_nothing(fitted, clustered, tmp_path):
    name, tokenizer = fitted
    tokenizer.save(tmp_path / "tok")
    loaded = load_tokenizer(tmp_path / "tok")
    assert type(loaded) is type(tokenizer) and loaded.get_params() == tokenizer.get_params()
    codes = tokenizer.transform(clustered[0])
    np.testing.assert_array_equal(loaded.transform(clustered[0]), codes)
    np.testing.assert_allclose(loaded.inverse_transform(codes), tokenizer.inverse_transform(codes), atol=1e-6)


def test_params_round_trip(fitted):
    name, tokenizer = fitted
    assert type(tokenizer)(**tokenizer.get_params()).get_params() == tokenizer.get_params()


def test_first_level_follows_clusters(fitted, clustered):
    name, tokenizer = fitted
    x, labels = clustered
    first = tokenizer.transform(x)[:, 0]
    same = (first[:, None] == first[None, :])
    same_cluster = labels[:, None] == labels[None, :]
    assert same[same_cluster].mean() > 0.6 > same[~same_cluster].mean() * 3


def test_codes_reconstruct_better_than_random_codes(fitted, clustered):
    name, tokenizer = fitted
    x = clustered[0] / np.linalg.norm(clustered[0], axis=1, keepdims=True)
    codes = tokenizer.transform(clustered[0])

    def cosine(c):
        recon = tokenizer.inverse_transform(c)
        return float((x * recon / np.linalg.norm(recon, axis=1, keepdims=True)).sum(1).mean())

    shuffled = np.random.default_rng(1).permutation(codes)
    assert cosine(codes) > cosine(shuffled) + 0.2
    assert cosine(codes) >= cosine(codes[:, :1]) - 0.02


@pytest.mark.parametrize(("collisions", "codebook"), [("append", 32), ("reassign", 64)])
def test_pipeline_gives_unique_codes_and_new_items_fit_in(fitted, collisions, codebook):
    name, _ = fitted
    x = np.random.default_rng(2).normal(size=(600, 16)).astype(np.float32)
    features = Features("text", "fake", x[:500], np.zeros(500, dtype=bool))
    tokenizer = make(name, codebook_size=codebook)
    codes, report = tokenize_features(features, tokenizer, collisions)
    assert collision_rate(codes.codes) == 0.0 and report["collision_rate_after"] == 0.0
    assert report["collision_rate_before"] > 0 or collisions == "reassign"
    new = assign_new(tokenizer, codes, x[500:], collisions)
    assert new.shape == (100, codes.codes.shape[1])
    assert collision_rate(np.concatenate([codes.codes, new])) == 0.0


@pytest.mark.parametrize("name", sorted(SMALL))
def test_bad_features_are_explained(name):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 4)).astype(np.float32)
    with pytest.raises(MmgrError, match="NaN"):
        make(name).fit(np.where(np.eye(50, 4) > 0, np.nan, x))
    with pytest.raises(MmgrError, match="same features"):
        make(name).fit(np.ones((50, 4), dtype=np.float32))
    with pytest.raises(MmgrError, match="fewer than the codebook size"):
        make(name, codebook_size=64).fit(x)
