"""`mmgr encode` on a small synthetic run: features land in the run directory, the cache makes re-runs cheap,
errors are messages."""

from __future__ import annotations

import json

from safetensors import safe_open

from tests.e2e.test_cli_data import mmgr


def test_text_image_fused_caption_features(encoded_run):
    run = encoded_run
    for modality in ("fused", "caption"):
        mmgr("encode", str(encoded_run), "--modality", modality, "--no-progress")
    manifest = json.loads((run / "manifest.json").read_text())
    for modality, dim in (("text", 384), ("image", 1280), ("fused", 1664)):
        with safe_open(str(run / "features" / f"{modality}.safetensors"), framework="numpy") as handle:
            assert handle.get_tensor("vectors").shape == (40, dim)
            assert handle.metadata()["dataset_fingerprint"] == manifest["dataset"]["fingerprint"]
        assert manifest["stages"][f"encode.{modality}"]["items"] == 40
    assert manifest["stages"]["encode.caption"]["captioned"] == 40


def test_rerun_comes_from_cache_and_overrides_are_recorded(encoded_run):
    run = encoded_run
    mmgr("encode", str(encoded_run), "--modality", "text", "--no-progress")
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["stages"]["encode.text"]["from_cache"] == 40
    mmgr("encode", str(encoded_run), "--modality", "text", "--no-progress", "encoders.text.fields=[title]")
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["stages"]["encode.text"]["computed"] == 40      # other text, other content keys
    assert manifest["config"]["encoders"]["text"]["fields"] == ["title"]


def test_encode_errors(tmp_path, encoded_run):
    result = mmgr("encode", str(tmp_path), "--modality", "text", check=False)
    assert result.returncode == 1 and "not a run directory" in result.stderr
    result = mmgr("encode", str(encoded_run), "--modality", "smell", check=False)
    assert result.returncode == 1 and "unknown modality" in result.stderr
    result = mmgr("encode", str(encoded_run), "--modality", "text", "encoders.text.feilds=[title]", check=False)
    assert result.returncode == 1 and "unknown key 'encoders.text.feilds'" in result.stderr
