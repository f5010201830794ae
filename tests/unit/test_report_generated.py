"""The report's table of generated item texts (captions, interest tags): their cost is read from the run's encode
stages and shown only for runs that generated text."""

from __future__ import annotations

import json
from pathlib import Path

from mmgr.report.document import markdown, sections
from mmgr.report.runs import generated_texts

REPORT = Path(__file__).resolve().parents[2] / "benchmarks/results/report-ml-100k/report.json"


def test_generated_texts_reads_the_encode_stages_of_captions_and_interests():
    stages = {"encode.text": {"items": 5}, "encode.interests": {"items": 5, "computed": 4, "from_cache": 1,
                                                                 "wall_seconds": 2.5, "model_id": "m", "other": 1}}
    assert generated_texts(stages) == {"interests": {"model_id": "m", "items": 5, "computed": 4, "from_cache": 1,
                                                     "wall_seconds": 2.5}}


def test_the_section_appears_only_when_a_run_generated_text():
    report = json.loads(REPORT.read_text())
    for row in report["rows"]:
        row["generated"] = {}
    assert "generated" not in [key for key, _, _ in sections(report)]
    report["rows"][0]["generated"] = {"interests": {"model_id": "gemma", "items": 10, "computed": 10,
                                                    "from_cache": 0, "wall_seconds": 5.0, "items_per_s": 2.0}}
    assert f"| {report['rows'][0]['name']} | interests | gemma | 10 | 10 | 0 | 5 | 2.00 |" in markdown(report)
