"""Run records: the files kept, and a record replaced whole (never half old, half new)."""

from __future__ import annotations

from mmgr.report.records import keep_record, recorded_files


def _run(folder, results: str):
    files = {"manifest.json": "{}", "results.json": results, "per_user_test.parquet": "p",
             "logs/next-item/csv/version_0/metrics.csv": "step,train/loss\n", "codes/text.safetensors": "c",
             "tokenizers/text.diagnostics.png": "png", "tokenizers/text.safetensors": "weights",
             "model.safetensors": "weights", "checkpoints/next-item/last.safetensors": "weights",
             "features/text.safetensors": "features", "items.parquet": "data", "raw/world.json": "plan",
             "raw/items.csv": "data"}
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder


def test_a_record_keeps_results_logs_codes_and_figures_not_weights_or_data(tmp_path):
    run = _run(tmp_path / "run", "1")
    assert [p.as_posix() for p in recorded_files(run)] == [
        "codes/text.safetensors", "logs/next-item/csv/version_0/metrics.csv", "manifest.json",
        "per_user_test.parquet", "raw/world.json", "results.json", "tokenizers/text.diagnostics.png"]


def test_a_record_is_replaced_whole_and_a_killed_write_leaves_nothing_behind(tmp_path):
    record = tmp_path / "records" / "tiger-s1"
    keep_record(_run(tmp_path / "run", "old"), record)
    (record.with_name("tiger-s1.new")).mkdir()                       # a write killed part way
    (record.with_name("tiger-s1.new") / "stray.json").write_text("{}")
    keep_record(_run(tmp_path / "run2", "new"), record)
    assert (record / "results.json").read_text() == "new" and not (record / "stray.json").exists()
    assert sorted(p.name for p in record.parent.iterdir()) == ["tiger-s1"]
