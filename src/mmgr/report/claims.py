"""Published claims, tested on a suite's runs.

A suite file may list claims, each saying that one row is above another (`row` above `versus`, e.g. "SynGR is above
MQL4GRec"). Each claim is tested like a row against the baseline: the paired bootstrap over the test users of the
difference `row - versus` in NDCG@10 and HR@10, on each row's per-user metric averaged over its seeds
(`mmgr.report.paired`). The verdict reads the 95% interval of the NDCG@10 difference:

    holds         the interval lies above 0
    reversed      the interval lies below 0: the row is below the one it should beat
    not shown     the interval contains 0: no difference this suite resolves
    not measured  one of the two rows has no finished run

The interval covers the sampling of users, not of training seeds; rows with one seed say less than the interval
suggests (the suite's seed spreads tell how much). A verdict on rows that did not converge is no verdict: the summary
keeps each row's `converged` beside it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mmgr.report.paired import versus

VERDICT_METRIC = "ndcg@10"


class SuiteClaim(BaseModel):
    model_config = ConfigDict(extra="forbid")

    paper: str = Field(description="who claims it, e.g. 'SynGR (arXiv 2605.18920)'")
    claim: str = Field(description="the claim in one line, e.g. 'the synergy loss helps'")
    row: str = Field(description="the row the claim says is above")
    versus: str = Field(description="the row it should beat")


def verdict(interval: list[float] | None) -> str:
    """The claim's verdict from the 95% interval of `row - versus` (None: not measured)."""
    if interval is None:
        return "not measured"
    low, high = interval
    return "holds" if low > 0 else "reversed" if high < 0 else "not shown"


def claim_verdicts(claims: list[SuiteClaim], means: dict[str, dict[str, dict[str, float]]],
                   converged: dict[str, bool], resamples: int) -> list[dict[str, Any]]:
    """Each claim with its paired test and verdict; `means`: row -> user -> metric, each row's per-user test metric
    averaged over its seeds (`per_user_means`), for the rows with finished runs."""
    tested = []
    for claim in claims:
        measured = claim.row in means and claim.versus in means
        test = versus(means[claim.versus], means[claim.row], resamples) if measured else None
        tested.append({**claim.model_dump(), "test": test,
                       "converged": measured and converged[claim.row] and converged[claim.versus],
                       "verdict": verdict(test[VERDICT_METRIC]["ci"] if test else None)})
    return tested
