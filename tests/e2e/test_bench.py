"""`mmgr bench`: three recipes on one dataset, one report (JSON, Markdown, self-contained HTML), reused runs; the
HTML opened in a real headless Chromium shows the metric table and every plot."""

from __future__ import annotations

import json

import pytest

from tests import browser
from tests.helpers import TINY, mmgr

RECIPES = ("tiger", "sasrec", "mgr-lf")


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bench")
    out = folder / "report"
    args = ["bench", "--recipes", *(f"configs/{r}.yaml" for r in RECIPES), "--dataset", "synthetic",
            "--out", str(out), "--no-progress", "--resamples", "500", *TINY, f"encoders.cache_dir={folder / 'cache'}"]
    first = mmgr(*args)
    return out, args, first.stdout


def test_report_compares_every_recipe_against_the_baseline(bench):
    out, _, stdout = bench
    report = json.loads((out / "report.json").read_text())
    assert [row["name"] for row in report["rows"]] == list(RECIPES) and report["baseline"] == "tiger"
    assert set(report["significance"]) == {"sasrec", "mgr-lf"}
    for row in report["rows"]:
        results = json.loads((out / "runs" / row["name"] / "results.json").read_text())["test"]
        assert row["test"]["ndcg@10"] == pytest.approx(results["ndcg@10"])   # copied from the run, not recomputed
        low, high = row["intervals"]["ndcg@10"]
        assert low <= row["test"]["ndcg@10"] <= high
    versus = report["significance"]["sasrec"]["ndcg@10"]
    assert versus["low"] <= versus["mean_difference"] <= versus["high"] and 0 <= versus["p_value"] <= 1
    assert report["published"] is None                                      # the synthetic world has no paper
    assert {f["key"] for f in report["figures"]} >= {"metrics", "curves", "tiger-tokenizer-text"}
    assert all((out / f["file"]).is_file() for f in report["figures"])
    markdown = (out / "report.md").read_text()
    assert "| mgr-lf |" in markdown and "![Test metrics" in markdown
    assert "NDCG@10" in stdout and "report.html" in stdout


def test_finished_runs_are_reused(bench):
    _, args, _ = bench
    again = mmgr(*args).stdout
    assert all(f"{name}: reusing" in again for name in RECIPES) and "running" not in again


def test_a_run_from_before_a_new_setting_is_still_reused_and_a_changed_one_is_not(bench):
    """Settings added to mmgr later (at their defaults) leave a finished run current; a changed setting does not."""
    from mmgr.config import load_config
    from mmgr.report.bench import BENCH_STAGE, finished
    from mmgr.rundir import RunDir

    out, args, _ = bench
    run = RunDir(out / "runs" / "tiger")
    overrides = [a for a in args[args.index("--resamples") + 2:]]
    config = load_config(["configs/synthetic.yaml", "configs/tiger.yaml"], overrides)
    manifest = run.manifest()
    older = json.loads(json.dumps(manifest["stages"][BENCH_STAGE]["config"]))
    del older["training"]["tmt"], older["model"]["words"]                 # as a run recorded before they existed
    manifest["stages"][BENCH_STAGE]["config"] = older
    (run.path / "manifest.json").write_text(json.dumps(manifest))
    assert finished(run, config)
    assert not finished(run, config.model_copy(update={"seed": config.seed + 1}))


def test_the_html_report_renders_its_table_and_every_plot_in_chromium(bench, tmp_path):
    if not browser.available():
        pytest.skip("headless Chromium is not installed (Debian package `chromium`; .ci/run installs it)")
    out, _, _ = bench
    page = tmp_path / "moved.html"                       # self-contained: opens without the figures folder
    page.write_bytes((out / "report.html").read_bytes())
    report = json.loads((out / "report.json").read_text())
    with browser.Browser() as chromium:
        chromium.open(page.as_uri())
        rows = chromium.evaluate("Array.from(document.querySelectorAll('#metrics tbody tr'))"
                                 ".map(r => r.cells[0].innerText)")
        images = chromium.evaluate("Array.from(document.images).map(i => ({alt: i.alt, width: i.naturalWidth, "
                                   "shown: i.getBoundingClientRect().width}))")
        headings = chromium.evaluate("Array.from(document.querySelectorAll('h2')).map(h => h.innerText)")
    assert rows == list(RECIPES)
    assert [i["alt"] for i in images] == [f["caption"] for f in report["figures"]]
    assert all(i["width"] > 100 and i["shown"] > 100 for i in images)      # decoded and laid out, not broken
    assert any(h.startswith("Test metrics") for h in headings) and "Tokenizer diagnostics" in headings


def test_unknown_dataset_and_stray_arguments_are_named(tmp_path):
    result = mmgr("bench", "--recipes", "configs/tiger.yaml", "--dataset", "nope", "--out", str(tmp_path),
                  check=False)
    assert result.returncode == 1 and "--dataset nope" in result.stderr and "ml-100k" in result.stderr
    result = mmgr("bench", "--recipes", "configs/tiger.yaml", "extra", "--dataset", "synthetic", "--out",
                  str(tmp_path), check=False)
    assert result.returncode == 1 and "'extra' is neither a recipe" in result.stderr
