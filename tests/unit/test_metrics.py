import numpy as np
import pytest

from mmgr.evaluation.metrics import per_user, summarize, target_ranks
from mmgr.evaluation.significance import paired_bootstrap


def test_ranks_and_metrics_by_hand():
    ranked = np.array([[5, 3, 9], [1, 2, 3], [7, -1, -1]])
    targets = np.array([3, 4, 7])
    assert target_ranks(ranked, targets).tolist() == [1, 3, 0]
    m = per_user(ranked, targets, ks=(1, 3))
    assert m["hr@1"].tolist() == [0, 0, 1] and m["hr@3"].tolist() == [1, 0, 1]
    np.testing.assert_allclose(m["ndcg@3"], [1 / np.log2(3), 0, 1])
    np.testing.assert_allclose(m["mrr@3"], [0.5, 0, 1])
    assert m["recall@3"] is m["hr@3"]
    assert summarize(m)["hr@3"] == pytest.approx(2 / 3)


def test_lists_shorter_than_k_are_refused():
    with pytest.raises(ValueError, match="@10"):
        per_user(np.zeros((2, 5), dtype=int), np.zeros(2, dtype=int), ks=(10,))


def test_paired_bootstrap_detects_a_real_difference_and_not_noise():
    rng = np.random.default_rng(0)
    a = (rng.random(2000) < 0.05).astype(float)
    better = np.maximum(a, (rng.random(2000) < 0.05).astype(float))
    result = paired_bootstrap(a, better, resamples=2000)
    assert result["low"] > 0 and result["p_value"] < 0.01
    same = paired_bootstrap(a, a[rng.permutation(2000)], resamples=2000)
    assert same["low"] < 0 < same["high"]
    assert paired_bootstrap(a, better, resamples=2000) == result          # seeded
    with pytest.raises(ValueError, match="aligned"):
        paired_bootstrap(a, a[:10])
