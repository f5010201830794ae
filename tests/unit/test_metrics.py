import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mmgr.errors import MmgrError
from mmgr.evaluation.metrics import per_user, summarize, target_ranks
from mmgr.evaluation.significance import compare_runs, paired_bootstrap


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


def per_user_file(folder, users, targets, ndcg):
    folder.mkdir(exist_ok=True)
    pq.write_table(pa.table({"user_id": users, "target": targets, "ranked": [[t] for t in targets],
                             "ndcg@10": ndcg}), folder / "per_user_test.parquet")
    return folder


def test_compare_runs_pairs_users_by_id(tmp_path):
    a = per_user_file(tmp_path / "a", ["u1", "u2", "u3"], [5, 6, 7], [0.0, 1.0, 0.5])
    b = per_user_file(tmp_path / "b", ["u3", "u1", "u4"], [7, 5, 9], [1.0, 1.0, 0.0])   # other order, u4 extra
    result = compare_runs(a, b, metrics=("ndcg@10",), resamples=200)
    assert (result["users"], result["only_in_a"], result["only_in_b"]) == (2, 1, 1)
    assert result["metrics"]["ndcg@10"]["mean_difference"] == pytest.approx(0.75)   # u1 +1, u3 +0.5
    with pytest.raises(MmgrError, match="known: ndcg@10"):
        compare_runs(a, b, metrics=("mrr@5",))
    other = per_user_file(tmp_path / "c", ["u1"], [8], [1.0])
    with pytest.raises(MmgrError, match="different test items"):
        compare_runs(a, other)
