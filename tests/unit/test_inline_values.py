"""mmgr.report.inline: numbers in prose rewritten from results files (hand-made JSON, hand-written answers)."""

from __future__ import annotations

import json

import pytest

from mmgr.report.inline import MarkerError, fill_values, formatted, json_reader, lookup

SUMMARY = {
    "rows": [{"name": "text", "metrics": {"ndcg@10": 0.059276}, "epochs": [52, 57]},
             {"name": "late", "metrics": {"ndcg@10": 0.05}, "epochs": [40]}],
    "claims": [{"row": "late", "versus": "text", "test": {"ndcg@10": {"diff": -0.001381, "ci": [-0.01173, 0.009134],
                                                                      "p": 0.8074, "users": 943}}},
               {"row": "late", "versus": "image", "test": None, "verdict": "not measured"}],
    "analyses": {"lists": {"late": {"fused_vs_alone": {"text": {"mean_difference": 0.0015, "low": -0.0039,
                                                                "high": 0.0071, "p_value": 0.0004}}}},
                 "saliency": {"late": {"mean": {"text": 0.656}}}},
    "tables": {"rqvae.Scientific.json": {"collision_rate": 0.2042}},
}


def test_lookup_enters_dicts_lists_by_index_and_by_fields():
    assert lookup(SUMMARY, "rows[name=text].metrics.ndcg@10") == 0.059276
    assert lookup(SUMMARY, "rows[1].epochs[0]") == 40
    assert lookup(SUMMARY, "claims[row=late,versus=text].test.ndcg@10.users") == 943
    assert lookup(SUMMARY, "analyses.saliency.late.mean.text") == 0.656
    assert lookup(SUMMARY, "claims[?row=late]") == SUMMARY["claims"]
    assert lookup(SUMMARY, "claims[?row=text]") == []
    assert lookup(SUMMARY, 'tables."rqvae.Scientific.json".collision_rate') == 0.2042


@pytest.mark.parametrize("path, says", [
    ("rows[name=sasrec].metrics", "matches 0 items"),
    ("claims[row=late].test", "matches 2 items"),
    ("rows[2]", "past the list's 2 items"),
    ("rows[name=text].metric", "no key 'metric'"),
    ("analyses[0]", "not a list"),
    ("rows[name]", "neither an index nor field=value"),
    ("tables.rqvae.Scientific.json", "no key 'rqvae'"),
])
def test_lookup_names_what_is_missing(path, says):
    with pytest.raises(MarkerError, match=says):
        lookup(SUMMARY, path)


def test_formats_numbers_and_paired_comparisons():
    assert formatted(0.059276, ".4f") == "0.0593"
    assert formatted(0.656, ".0%") == "66%"
    assert formatted(22171, ",d") == "22,171"
    assert formatted(41.0, "d") == "41"
    assert formatted(lookup(SUMMARY, "claims[?row=late]"), "len") == "2"
    assert formatted(SUMMARY["claims"][0]["test"]["ndcg@10"], "ci") == "-0.0014 [-0.0117, +0.0091]"
    assert formatted(SUMMARY["claims"][0]["test"]["ndcg@10"], "ci-p") == "-0.0014 [-0.0117, +0.0091], p=0.807"
    bootstrap = SUMMARY["analyses"]["lists"]["late"]["fused_vs_alone"]["text"]
    assert formatted(bootstrap, "ci-p") == "+0.0015 [-0.0039, +0.0071], p<0.001"
    with pytest.raises(MarkerError, match="needs a number"):
        formatted(None, ".4f")
    with pytest.raises(MarkerError, match="needs a paired comparison"):
        formatted(0.5, "ci")
    with pytest.raises(MarkerError, match="needs a list"):
        formatted(0.5, "len")


def test_fill_values_rewrites_stale_numbers_and_nothing_else(tmp_path):
    (tmp_path / "s.json").write_text(json.dumps(SUMMARY))
    marker = "<!-- value s.json rows[name=text].metrics.ndcg@10 .3f -->"
    text = f"Text reaches {marker}0.041<!-- /value --> (old),\nthen {marker}<!-- /value -->; 0.041 stays."
    assert fill_values(text, json_reader(tmp_path)) == (
        f"Text reaches {marker}0.059<!-- /value --> (old),\nthen {marker}0.059<!-- /value -->; 0.041 stays.")
    counted = "<!-- value s.json claims[?verdict=not measured] len -->"
    assert fill_values(f"{counted}0<!-- /value --> and {counted}<!-- /value -->", json_reader(tmp_path)) == (
        f"{counted}1<!-- /value --> and {counted}1<!-- /value -->")
    with pytest.raises(MarkerError, match="no results file other.json"):
        fill_values("<!-- value other.json a .1f -->1<!-- /value -->", json_reader(tmp_path))
    with pytest.raises(MarkerError, match=r"<!-- value s.json rows\[9\] .1f -->: \[9\]"):
        fill_values("<!-- value s.json rows[9] .1f -->1<!-- /value -->", json_reader(tmp_path))
    with pytest.raises(MarkerError, match="1 value marker"):
        fill_values("<!-- value s.json rows[0] -->1<!-- /value -->", json_reader(tmp_path))
