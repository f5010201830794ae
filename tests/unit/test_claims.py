"""Published claims tested on suite rows: the verdict from the interval, and the paired test on hand-made runs."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mmgr.report.claims import SuiteClaim, claim_verdicts, verdict
from mmgr.report.paired import per_user_means


@pytest.mark.parametrize(("interval", "expected"), [
    ([0.001, 0.004], "holds"), ([-0.004, -0.001], "reversed"), ([-0.001, 0.002], "not shown"),
    ([0.0, 0.002], "not shown"), (None, "not measured")])
def test_the_verdict_reads_the_interval(interval, expected):
    assert verdict(interval) == expected


def run(folder, ndcg):
    """A finished run's per-user test results: users u0.. with the given NDCG@10 (HR@10 = NDCG > 0)."""
    folder.mkdir()
    pq.write_table(pa.table({"user_id": [f"u{i}" for i in range(len(ndcg))], "target": list(range(len(ndcg))),
                             "ndcg@10": ndcg, "hr@10": [float(v > 0) for v in ndcg]}),
                   folder / "per_user_test.parquet")
    return folder


def test_each_claim_gets_the_paired_difference_of_its_rows_over_their_seeds(tmp_path):
    rng = np.random.default_rng(0)
    base = rng.uniform(0, 0.5, 400)
    folders = {"text": [run(tmp_path / "text", base)],
               # two seeds whose per-user mean is base + 0.1 (seed-averaged before the test)
               "both": [run(tmp_path / "both-1", base + 0.05), run(tmp_path / "both-2", base + 0.15)],
               "worse": [run(tmp_path / "worse", base - 0.1)]}
    claims = [SuiteClaim(paper="P", claim="both beats text", row="both", versus="text"),
              SuiteClaim(paper="P", claim="worse beats text", row="worse", versus="text"),
              SuiteClaim(paper="P", claim="same", row="text", versus="both"),
              SuiteClaim(paper="Q", claim="unmeasured beats text", row="later", versus="text")]
    converged = {"text": True, "both": True, "worse": False}
    means = {name: per_user_means(paths) for name, paths in folders.items()}
    up, down, reverse, missing = claim_verdicts(claims, means, converged, resamples=200)
    assert up["test"]["ndcg@10"]["diff"] == pytest.approx(0.1) and up["verdict"] == "holds" and up["converged"]
    assert down["test"]["ndcg@10"]["diff"] == pytest.approx(-0.1) and down["verdict"] == "reversed"
    assert not down["converged"]                                       # a row not converged: said beside the verdict
    assert reverse["test"]["ndcg@10"]["diff"] == pytest.approx(-0.1) and reverse["verdict"] == "reversed"
    assert missing["test"] is None and missing["verdict"] == "not measured" and missing["paper"] == "Q"
