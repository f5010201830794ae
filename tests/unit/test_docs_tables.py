"""docs/tables.py: the generated tables and numbers of README.md and docs/*.md match benchmarks/results."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

from mmgr.report.suite_tables import render_suite

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "docs" / "tables.py"


def tables_module():
    spec = importlib.util.spec_from_file_location("docs_tables", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_tables_are_up_to_date():
    done = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr + done.stdout


def test_every_marker_names_a_known_table_and_is_closed():
    tables = tables_module()
    for path in tables.documents():
        text = path.read_text()
        opened = tables.re.findall(r"<!-- table:([a-z0-9-]+) -->", text)
        closed = tables.re.findall(r"<!-- /table:([a-z0-9-]+) -->", text)
        assert opened == closed, path
        assert set(opened) <= set(tables.TABLES), path
    readme = (ROOT / "README.md").read_text()
    assert "<!-- table:headline -->" in readme and "<!-- table:suite-arts -->" in readme
    assert "<!-- table:suite-arts -->" in (ROOT / "docs" / "benchmarks.md").read_text()


def suite_summary() -> dict:
    metrics = {"hr@1": 0.01, "hr@5": 0.04, "hr@10": 0.07, "ndcg@5": 0.03, "ndcg@10": 0.038}
    return {
        "suite": "toy", "dataset": "amazon-arts-2018", "command": "mmgr bench --suite configs/suites/toy.yaml",
        "commit": "0123456789abcdef", "device": "cpu (2 cores)", "baseline": "text",
        "rows": [
            {"name": "text", "description": "baseline", "seeds": [1, 2], "metrics": metrics,
             "metrics_sd": {m: 0.001 for m in metrics}, "epochs": [50, 49], "samples_seen": [1152000, 1150000],
             "train_seconds": [3000.0, 2990.0], "converged": True, "vs_baseline": None},
            {"name": "late", "description": "late fusion", "seeds": [1, 2], "metrics": {**metrics, "ndcg@10": 0.041},
             "metrics_sd": {m: 0.002 for m in metrics}, "epochs": [30, 31], "samples_seen": [700000, 710000],
             "train_seconds": [4200.0, 4200.0], "converged": False, "late_gain": [0.004, 0.003],
             "vs_baseline": {"ndcg@10": {"diff": 0.003, "ci": [0.001, 0.005], "p": 0.0},
                             "hr@10": {"diff": 0.004, "ci": [-0.001, 0.009], "p": 0.12}}},
        ],
        "published": {"source": "MACRec paper, Table 2", "rows": {"tiger": {"hr@10": 0.1167, "ndcg@10": 0.0806}}},
    }


def test_suite_renderer_on_a_hand_made_summary():
    text = render_suite(suite_summary())
    lines = text.splitlines()
    text_row = next(line for line in lines if line.startswith("| text |"))
    late_row = next(line for line in lines if line.startswith("| late |"))
    assert "0.0380 ± 0.0010" in text_row and "50 / 49" in text_row and "1,152,000 / 1,150,000" in text_row
    assert "| yes |" in text_row and text_row.rstrip().endswith("| — |") and "| 50 / 50 |" in text_row
    assert "| NO (+0.0040) |" in late_row and "0.0410 ± 0.0020" in late_row and "| 70 / 70 |" in late_row
    assert "+0.0030 [+0.0010, +0.0050], p<0.001" in late_row and "p=0.000" not in text
    assert "NDCG@10 - text [95% CI], p" in text
    published = next(line for line in lines if line.startswith("| tiger (published) |"))
    assert "0.1167" in published and "0.0806" in published and "—" in published
    assert "MACRec paper, Table 2" in text and "mmgr bench --suite configs/suites/toy.yaml" in text
    assert text.index("| late |") < text.index("| tiger (published) |")


def test_suite_renderer_without_a_summary():
    assert render_suite(None) == "Not run yet."


def test_p_values_print_below_one_in_a_thousand():
    from mmgr.report.paired import bootstrap_text, p_text

    assert p_text(0.0) == "p<0.001" and p_text(0.0004) == "p<0.001" and p_text(0.021) == "p=0.021"
    test = {"mean_difference": 0.0012, "low": -0.0003, "high": 0.00274, "p_value": 0.12}
    assert bootstrap_text(test) == "+0.0012 [-0.0003, +0.0027], p=0.120"
