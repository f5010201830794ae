"""CLIP through transformers (hub name or local path; `clip:` prefix optional): the projected image embedding
(`encoders.image.model=NAME`, with the resize / crop / normalisation of the model's own image-processor config) and
the projected text embedding of the same item texts as the text encoder (`encoders.text.model=clip:NAME`). Both
towers map into one space, so `encoders.fusion.method=joint` averages them into a joint item embedding."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import numpy as np
import torch

from mmgr.config_encoders import ImageEncoderConfig, TextEncoderConfig
from mmgr.encoders.image import PREPROCESSING, PrefetchingImageEncoder
from mmgr.encoders.text import ItemTextInputs
from mmgr.errors import MmgrError

PREFIX = "clip:"


def clip_name(model: str) -> str:
    return model.removeprefix(PREFIX)


@cache
def load_clip(name: str):
    """(CLIPModel in eval mode, its image processor, its tokenizer) for a hub name or local path."""
    from transformers import AutoTokenizer, CLIPImageProcessor, CLIPModel

    try:
        model = CLIPModel.from_pretrained(name).eval()
        return model, CLIPImageProcessor.from_pretrained(name), AutoTokenizer.from_pretrained(name)
    except OSError as exc:
        raise MmgrError(f"cannot load CLIP model {name!r} ({exc}); give a local path or a hub name reachable from "
                        "this machine") from None


class ClipImageEncoder(PrefetchingImageEncoder):
    """A CLIP model's projected image embedding (L2-normalised)."""

    def __init__(self, cfg: ImageEncoderConfig) -> None:
        super().__init__(cfg)
        name = clip_name(cfg.model)
        self.model, processor, _ = load_clip(name)
        self.resize = processor.size.get("shortest_edge", processor.crop_size["height"])
        self.crop = processor.crop_size["height"]
        self.mean = torch.tensor(processor.image_mean).reshape(1, 3, 1, 1)
        self.std = torch.tensor(processor.image_std).reshape(1, 3, 1, 1)
        self.model_id = PREFIX + name
        precision = "bf16" if self.bf16 else "fp32"
        self.version = f"{PREPROCESSING}-short{self.resize}-center{self.crop}-clipnorm-{precision}"
        self.dim = int(self.model.config.projection_dim)

    @torch.inference_mode()
    def _run(self, batch: np.ndarray) -> tuple[np.ndarray, None]:
        x = (torch.from_numpy(batch).permute(0, 3, 1, 2).float().div_(255.0) - self.mean) / self.std
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            pooled = self.model.vision_model(pixel_values=x).pooler_output         # (B, hidden)
            embeds = self.model.visual_projection(pooled)                          # (B, projection_dim)
        return torch.nn.functional.normalize(embeds.float(), dim=-1).numpy(), None


class ClipTextEncoder(ItemTextInputs):
    """A CLIP model's projected text embedding of each item's text (L2-normalised; truncated to its context)."""

    def __init__(self, cfg: TextEncoderConfig) -> None:
        super().__init__(cfg)
        name = clip_name(cfg.model)
        self.model, _, self.tokenizer = load_clip(name)
        self.model_id = PREFIX + name
        self.dim = int(self.model.config.projection_dim)
        self.version = "clip-text:" + self.layout_id
        self.context = int(self.model.config.text_config.max_position_embeddings)

    @torch.inference_mode()
    def encode(self, batch: Sequence[str]) -> np.ndarray:
        parts = []
        for start in range(0, len(batch), self.cfg.batch_size):
            tokens = self.tokenizer(list(batch[start:start + self.cfg.batch_size]), padding=True, truncation=True,
                                    max_length=self.context, return_tensors="pt")
            pooled = self.model.text_model(input_ids=tokens["input_ids"],
                                           attention_mask=tokens["attention_mask"]).pooler_output  # (B, hidden)
            parts.append(torch.nn.functional.normalize(self.model.text_projection(pooled), dim=-1))
        return torch.cat(parts).numpy() if parts else np.zeros((0, self.dim), dtype=np.float32)
