"""`mmgr encode` on a small synthetic run: features land in the run directory, the cache makes re-runs cheap,
errors are messages."""

from __future__ import annotations

import json

from safetensors import safe_open

from tests.helpers import mmgr


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


def test_clip_text_image_and_joint_fusion(tmp_path, clip_dir):
    run = tmp_path / "run"
    mmgr("data", "import", "--format", "synthetic", "--out", str(run), "data.synthetic.n_items=40",
         "data.synthetic.n_users=30", "data.synthetic.image_size=32", f"encoders.cache_dir={tmp_path / 'cache'}",
         f"encoders.text.model=clip:{clip_dir}", f"encoders.image.model={clip_dir}", "encoders.fusion.method=joint")
    for modality in ("text", "image", "fused"):
        mmgr("encode", str(run), "--modality", modality, "--no-progress")
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["stages"]["encode.text"]["model_id"] == manifest["stages"]["encode.image"]["model_id"]
    assert manifest["stages"]["encode.fused"]["method"] == "joint" and manifest["stages"]["encode.fused"]["dim"] == 16
