"""RQ-VAE tokenizer: contract (shapes, params, save/load), determinism, what training learns, and its options."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mmgr.errors import MmgrError
from mmgr.tokenizers.base import load_tokenizer
from mmgr.tokenizers.collisions import collision_rate
from mmgr.tokenizers.rqvae import RQVAE, utilization
from mmgr.tokenizers.rqvae_network import rotate_to, sinkhorn_assign

SMALL = {"levels": 2, "codebook_size": [8, 8], "hidden": [32], "e_dim": 8, "epochs": 12, "batch_size": 100}


def mixture(n: int = 600, d: int = 16, k: int = 8, spread: float = 0.3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """float32[n, d] points around k Gaussian centres, and each point's centre (n,)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d))
    labels = rng.integers(0, k, n)
    return (centres[labels] + spread * rng.normal(size=(n, d))).astype(np.float32), labels


def mean_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float((a * b).sum(1).mean())


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    return mixture()


@pytest.fixture(scope="module")
def fitted(data: tuple[np.ndarray, np.ndarray]) -> RQVAE:
    return RQVAE(**SMALL).fit(data[0])


def test_shapes_and_dtypes(fitted: RQVAE, data: tuple[np.ndarray, np.ndarray]) -> None:
    x = data[0]
    codes = fitted.transform(x)
    assert codes.shape == (600, 2) and codes.dtype == np.int64
    assert codes.min() >= 0 and codes.max() < 8
    assert fitted.codebook_sizes_ == [8, 8] and fitted.dim_ == 16 and fitted.levels == 2
    for prefix in (1, 2):
        recon = fitted.inverse_transform(codes[:, :prefix])
        assert recon.shape == (600, 16) and recon.dtype == np.float32
    cands = fitted.candidates(x, 3)
    assert cands.shape == (600, 3) and cands.dtype == np.int64
    assert all(len(set(row)) == 3 for row in cands.tolist())
    assert fitted.candidates(x, 100).shape == (600, 8)  # k is capped at the last codebook's size


def test_params_round_trip_and_are_json(fitted: RQVAE) -> None:
    params = fitted.get_params()
    assert json.loads(json.dumps(params)) == params
    assert RQVAE(**params).get_params() == params
    assert params["levels"] == 2 and params["hidden"] == [32]
    assert RQVAE(hidden=(64, 32)).get_params()["hidden"] == [64, 32]


def test_same_seed_gives_identical_codes(fitted: RQVAE, data: tuple[np.ndarray, np.ndarray]) -> None:
    again = RQVAE(**SMALL).fit(data[0])
    np.testing.assert_array_equal(again.transform(data[0]), fitted.transform(data[0]))
    assert [h["loss"] for h in again.history_] == [h["loss"] for h in fitted.history_]


def test_save_load_identity(fitted: RQVAE, data: tuple[np.ndarray, np.ndarray], tmp_path) -> None:
    x = data[0]
    fitted.save(tmp_path / "t")
    loaded = load_tokenizer(tmp_path / "t")
    assert isinstance(loaded, RQVAE) and loaded.get_params() == fitted.get_params()
    codes = fitted.transform(x)
    np.testing.assert_array_equal(loaded.transform(x), codes)
    np.testing.assert_array_equal(loaded.inverse_transform(codes), fitted.inverse_transform(codes))
    np.testing.assert_array_equal(loaded.candidates(x, 4), fitted.candidates(x, 4))
    assert loaded.history_ == fitted.history_ and loaded.restarts_ == fitted.restarts_


def test_reconstruction_beats_random_codes_and_deepens(fitted: RQVAE, data: tuple[np.ndarray, np.ndarray]) -> None:
    x = data[0]
    codes = fitted.transform(x)
    random_codes = np.random.default_rng(1).integers(0, 8, codes.shape)
    learned = mean_cosine(fitted.inverse_transform(codes), x)
    assert learned > mean_cosine(fitted.inverse_transform(random_codes), x) + 0.2
    assert learned >= mean_cosine(fitted.inverse_transform(codes[:, :1]), x) - 1e-3


def test_same_cluster_shares_first_code(fitted: RQVAE, data: tuple[np.ndarray, np.ndarray]) -> None:
    x, labels = data
    first = fitted.transform(x)[:, 0]
    same_cluster = labels[:, None] == labels[None, :]
    same_code = first[:, None] == first[None, :]
    assert same_code[same_cluster].mean() > 0.8
    assert same_code[~same_cluster].mean() < 0.3


def test_candidates_start_with_the_last_code(fitted: RQVAE, data: tuple[np.ndarray, np.ndarray]) -> None:
    x = data[0]
    np.testing.assert_array_equal(fitted.candidates(x, 5)[:, 0], fitted.transform(x)[:, -1])


def test_history_and_restarts_are_recorded(data: tuple[np.ndarray, np.ndarray]) -> None:
    x = data[0][:, :8]  # few clusters for a 32-code first level: some codewords go unused and restart
    tok = RQVAE(**{**SMALL, "codebook_size": [32, 8], "epochs": 4}).fit(x)
    assert len(tok.history_) == 4
    assert tok.restarts_ > 0 and tok.restarts_ == sum(h["restarts"] for h in tok.history_)
    assert tok.history_[-1]["restarts"] == 0  # no restart after the last epoch
    assert {"epoch", "loss", "recon", "quant", "used", "restarts", "restarts_per_level"} <= set(tok.history_[0])
    off = RQVAE(**{**SMALL, "codebook_size": [32, 8], "epochs": 4, "dead_code_restart": False}).fit(x)
    assert off.restarts_ == 0


def test_rotation_trick_trains(data: tuple[np.ndarray, np.ndarray]) -> None:
    tok = RQVAE(**{**SMALL, "gradient": "rotation"}).fit(data[0])
    losses = [h["loss"] for h in tok.history_]
    assert losses[-1] < 0.8 * losses[0]


def test_rotate_to_has_the_target_value_and_a_rotated_gradient() -> None:
    gen = torch.Generator().manual_seed(0)
    src = torch.randn(5, 4, generator=gen, requires_grad=True)
    tgt = torch.randn(5, 4, generator=gen)
    out = rotate_to(src, tgt)
    torch.testing.assert_close(out, tgt)
    grad = torch.randn(5, 4, generator=gen)
    out.backward(grad)
    scale = tgt.norm(dim=1) / src.detach().norm(dim=1)
    torch.testing.assert_close(src.grad.norm(dim=1), grad.norm(dim=1) * scale)  # rotation keeps length


def test_sinkhorn_assign_balances() -> None:
    gen = torch.Generator().manual_seed(0)
    dist = torch.rand(512, 16, generator=gen) + torch.linspace(0, 0.5, 16)  # argmin favours the first codes
    assert torch.bincount(dist.argmin(1), minlength=16).max() > 100
    counts = torch.bincount(sinkhorn_assign(dist, 0.003, 50), minlength=16)
    assert counts.min() >= 16 and counts.max() <= 48


def test_sinkhorn_runs_and_does_not_raise_collisions() -> None:
    x, _ = mixture(n=200, k=4, spread=0.05, seed=3)  # tight clusters: a hard case for the last level
    params = {**SMALL, "codebook_size": [4, 64], "epochs": 10}
    plain = RQVAE(**params).fit(x)
    balanced = RQVAE(**params, sinkhorn=True).fit(x)
    assert balanced.transform(x).shape == (200, 2)
    assert balanced.collision_rate_ <= plain.collision_rate_
    assert balanced.utilization_[-1] > plain.utilization_[-1]


def test_bad_input_raises_mmgr_error(fitted: RQVAE, data: tuple[np.ndarray, np.ndarray]) -> None:
    x = data[0].copy()
    x[3, 2] = np.nan
    with pytest.raises(MmgrError, match="NaN"):
        RQVAE(**SMALL).fit(x)
    with pytest.raises(MmgrError, match="NaN"):
        fitted.transform(x)
    with pytest.raises(MmgrError, match="gradient"):
        RQVAE(**{**SMALL, "gradient": "sgd"}).fit(data[0])
    with pytest.raises(MmgrError, match="out of range"):
        fitted.inverse_transform(np.full((2, 2), 8))
    with pytest.raises(MmgrError, match="shape"):
        fitted.inverse_transform(np.zeros((2, 3), dtype=np.int64))
    with pytest.raises(MmgrError, match="fit"):
        RQVAE().transform(data[0])


def test_code_statistics() -> None:
    codes = np.array([[0, 1], [0, 1], [1, 1], [2, 0]])
    assert collision_rate(codes) == 0.5
    assert utilization(codes, [4, 2]) == [0.75, 1.0]
