"""Fused item embeddings (early fusion, TriAlignGR's CMSA input) from text and image features.

- `concat`: weighted concatenation of the L2-normalised text and image vectors; a missing modality contributes
  zeros, so the other modality still places the item.
- `projection`: two linear maps into one `dim`-d space, trained with a symmetric InfoNCE loss on items that have
  both modalities (CLIP-style alignment learned on the catalog); the fused vector is the normalised mean of the
  available projected modalities.
- `joint`: a multimodal model's joint embedding: text and image features from the same CLIP model
  (`encoders.text.model=clip:NAME`, `encoders.image.model=NAME`) already share a space; the fused vector is the
  normalised weighted mean of the available ones.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from mmgr.config_encoders import FusionConfig
from mmgr.encoders.base import Features
from mmgr.encoders.clip import PREFIX as CLIP_PREFIX
from mmgr.errors import MmgrError
from mmgr.registry import Registry

Method = Callable[[Features, Features, FusionConfig, int], tuple[np.ndarray, dict]]   # -> (vectors, details)
FEATURE_FUSIONS: Registry[Method] = Registry("feature fusion")


def fuse(text: Features, image: Features, cfg: FusionConfig, seed: int = 0) -> Features:
    if text.vectors.shape[0] != image.vectors.shape[0]:
        raise MmgrError(f"text has {text.vectors.shape[0]} items but image has {image.vectors.shape[0]}")
    vectors, detail = FEATURE_FUSIONS.get(cfg.method)(text, image, cfg, seed)
    missing = text.missing & image.missing
    vectors[missing] = 0.0
    info = {"method": cfg.method, "text_model": text.model_id, "image_model": image.model_id,
            "dim": int(vectors.shape[1]), "items": int(len(missing)), "missing": int(missing.sum()),
            "text_only": int((~text.missing & image.missing).sum()),
            "image_only": int((text.missing & ~image.missing).sum()), **detail}
    return Features("fused", f"fusion-{cfg.method}({text.model_id}+{image.model_id})", vectors.astype(np.float32),
                    missing, info)


def _unit(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


@FEATURE_FUSIONS.register("concat")
def _concat(text: Features, image: Features, cfg: FusionConfig, seed: int) -> tuple[np.ndarray, dict]:
    return np.concatenate([cfg.text_weight * _unit(text.vectors), cfg.image_weight * _unit(image.vectors)], 1), {}


@FEATURE_FUSIONS.register("joint")
def _joint(text: Features, image: Features, cfg: FusionConfig, seed: int) -> tuple[np.ndarray, dict]:
    if not text.model_id.startswith(CLIP_PREFIX) or text.model_id != image.model_id:
        raise MmgrError(f"fusion.method=joint needs text and image features from one CLIP model (text: "
                        f"{text.model_id}, image: {image.model_id}); set encoders.text.model=clip:NAME and "
                        "encoders.image.model=NAME, then encode both")
    return _unit(cfg.text_weight * _unit(text.vectors) + cfg.image_weight * _unit(image.vectors)), {}


@FEATURE_FUSIONS.register("projection")
def _projection(text: Features, image: Features, cfg: FusionConfig, seed: int) -> tuple[np.ndarray, dict]:
    both = ~text.missing & ~image.missing
    if both.sum() < 2:
        raise MmgrError("fusion.method=projection needs at least 2 items with both text and image")
    generator = torch.Generator().manual_seed(seed)
    t, v = torch.from_numpy(_unit(text.vectors)), torch.from_numpy(_unit(image.vectors))
    proj_t = torch.nn.Linear(t.shape[1], cfg.dim, bias=False)
    proj_v = torch.nn.Linear(v.shape[1], cfg.dim, bias=False)
    for layer in (proj_t, proj_v):
        torch.nn.init.normal_(layer.weight, std=layer.in_features ** -0.5, generator=generator)
    log_scale = torch.nn.Parameter(torch.tensor(np.log(1 / 0.07), dtype=torch.float32))
    optimizer = torch.optim.Adam([*proj_t.parameters(), *proj_v.parameters(), log_scale], lr=1e-3)
    index = torch.from_numpy(np.flatnonzero(both))
    loss = torch.tensor(0.0)
    for _ in range(cfg.epochs):
        for batch in index[torch.randperm(len(index), generator=generator)].split(512):
            zt, zv = F.normalize(proj_t(t[batch]), dim=1), F.normalize(proj_v(v[batch]), dim=1)  # (B, dim)
            logits = log_scale.exp().clamp(max=100) * zt @ zv.T                                  # (B, B)
            target = torch.arange(len(batch))
            loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        zt = F.normalize(proj_t(t), dim=1) * torch.from_numpy(~text.missing)[:, None]
        zv = F.normalize(proj_v(v), dim=1) * torch.from_numpy(~image.missing)[:, None]
        fused = F.normalize(cfg.text_weight * zt + cfg.image_weight * zv, dim=1).numpy()
    return fused, {"alignment_loss": loss.item(), "aligned_items": int(both.sum())}
