"""CLIP through transformers: image and text towers from a local checkpoint (`clip_dir`, a tiny random CLIP saved
like a hub model), and their joint fused embedding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmgr.config_encoders import FusionConfig, ImageEncoderConfig, TextEncoderConfig
from mmgr.encoders.base import Features, encode_items
from mmgr.encoders.clip import ClipImageEncoder, ClipTextEncoder
from mmgr.encoders.fusion import fuse
from mmgr.encoders.image import load_image_array
from mmgr.encoders.image_models import make_image_encoder
from mmgr.errors import MmgrError
from tests.helpers import items_table, solid


def test_image_tower_preprocesses_like_the_model_config(tmp_path, clip_dir):
    from transformers import CLIPModel

    red, blue = solid(tmp_path / "r.png", "red", size=(60, 50)), solid(tmp_path / "b.png", "blue")
    items = items_table(image=[red, None, blue, red], has_image=[True, False, True, True])
    encoder = make_image_encoder(ImageEncoderConfig(model=clip_dir, bf16=False))
    assert isinstance(encoder, ClipImageEncoder) and (encoder.resize, encoder.crop, encoder.dim) == (40, 32, 16)
    features = encode_items(encoder, items, progress=False)
    assert features.vectors.shape == (4, 16) and features.missing.tolist() == [False, True, False, False]
    np.testing.assert_allclose(features.vectors[0], features.vectors[3], atol=1e-6)
    pixels = torch.from_numpy(np.array(load_image_array(blue, 40, 32))).permute(2, 0, 1)[None].float() / 255
    mean, std = torch.tensor([0.4815, 0.4578, 0.4082]), torch.tensor([0.2686, 0.2613, 0.2758])
    model = CLIPModel.from_pretrained(clip_dir).eval()
    with torch.no_grad():
        pooled = model.vision_model(pixel_values=(pixels - mean[:, None, None]) / std[:, None, None]).pooler_output
        expected = torch.nn.functional.normalize(model.visual_projection(pooled), dim=-1)[0].numpy()
    np.testing.assert_allclose(features.vectors[2], expected, atol=1e-3)


def test_text_tower_encodes_item_texts(clip_dir):
    items = items_table(title=["red mug", "", "blue bowl", "red mug"])
    encoder = ClipTextEncoder(TextEncoderConfig(model="clip:" + clip_dir, fields=["title"]))
    features = encode_items(encoder, items, progress=False)
    assert features.vectors.shape == (4, 16) and features.missing.tolist() == [False, True, False, False]
    np.testing.assert_allclose(np.linalg.norm(features.vectors[[0, 2]], axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(features.vectors[0], features.vectors[3], atol=1e-6)
    assert np.abs(features.vectors[0] - features.vectors[2]).max() > 1e-3


def test_joint_fusion_needs_one_clip_model_for_both_modalities():
    rng = np.random.default_rng(0)
    text = Features("text", "clip:m", rng.normal(size=(3, 4)).astype(np.float32), np.array([False, True, False]))
    image = Features("image", "clip:m", rng.normal(size=(3, 4)).astype(np.float32), np.array([False, False, True]))
    text.vectors[1] = 0
    image.vectors[2] = 0
    fused = fuse(text, image, FusionConfig(method="joint"))
    unit = lambda v: v / np.linalg.norm(v)  # noqa: E731
    np.testing.assert_allclose(fused.vectors[0], unit(unit(text.vectors[0]) + unit(image.vectors[0])), atol=1e-6)
    np.testing.assert_allclose(fused.vectors[1], unit(image.vectors[1]), atol=1e-6)   # text missing: image alone
    with pytest.raises(MmgrError, match="one CLIP model"):
        fuse(Features("text", "all-MiniLM-L6-v2", text.vectors, text.missing), image, FusionConfig(method="joint"))


def test_unknown_clip_model_names_the_model(tmp_path):
    with pytest.raises(MmgrError, match="no-such-model"):
        make_image_encoder(ImageEncoderConfig(model=str(tmp_path / "no-such-model")))
