"""Suite files and the convergence rule, against hand-made cases."""

from __future__ import annotations

import pytest

from mmgr.errors import ConfigError
from mmgr.report.suite import converged, late_gain, load_suite


def history(*scores: float) -> list[dict]:
    return [{"step": 100 * (i + 1), "valid_ndcg@10": s} for i, s in enumerate(scores)]


@pytest.mark.parametrize(("scores", "users", "expected"), [
    ((.01, .03, .05, .06, .07, .08, .08, .08, .0805, .0801), 0, True),     # last 20%: +0.6% over the best before
    ((.01, .03, .05, .06, .07, .08, .08, .08, .085, .09), 100_000, False),  # still climbing, beyond the noise
    ((.01, .03, .05, .06, .07, .08, .08, .08, .083, .085), 2_000, True),    # +.005: within one SE (.0061) of 2,000
    ((.01, .03, .05, .06, .07, .08, .07, .06, .05, .04), 0, True),          # past its best: flat (worse) late
    ((.05, .06), 2_000, False),                                               # too few validations to tell
    ((), 2_000, False),
])
def test_converged_means_validation_flat_over_the_last_fifth_within_its_noise(scores, users, expected):
    assert converged(history(*scores), users) is expected


def test_the_late_gain_is_reported():
    assert late_gain(history(.01, .03, .05, .06, .07, .08, .08, .08, .085, .09)) == pytest.approx(.01)
    assert late_gain(history()) is None


@pytest.mark.parametrize(("text", "message"), [
    ("name: a\ndataset: d.yaml\nbaseline: x\nrows: [{name: y, recipes: [r.yaml]}]", "baseline 'x' is not a row"),
    ("name: a\ndataset: d.yaml\nbaseline: y\nrows: [{name: y, recipes: [r.yaml]}, {name: y, recipes: []}]",
     "two rows share a name"),
    ("name: A/b\ndataset: d.yaml\nbaseline: y\nrows: [{name: y, recipes: [r.yaml]}]", "name 'A/b'"),
    ("name: a\ndataset: d.yaml\nbaseline: y\nrows: [{name: y, recipe: [r.yaml]}]", "rows.0.recipe"),
    ("name: a\n  bad: [", "not valid YAML"),
])
def test_a_bad_suite_file_is_named_with_its_problem(tmp_path, text, message):
    path = tmp_path / "suite.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as error:
        load_suite(path)
    assert str(path) in str(error.value)


def test_the_shipped_suites_validate():
    from pathlib import Path

    suites = sorted((Path(__file__).resolve().parents[2] / "configs" / "suites").glob("*.yaml"))
    assert suites and all(load_suite(s).rows for s in suites)
