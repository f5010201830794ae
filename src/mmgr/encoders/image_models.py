"""The configured image model: EfficientNet-Lite0 (the offline default) or a CLIP vision tower (`encoders/clip.py`,
imported only when asked for)."""

from __future__ import annotations

from mmgr.config_encoders import ImageEncoderConfig
from mmgr.encoders.image import EfficientNetLite0, PrefetchingImageEncoder


def make_image_encoder(cfg: ImageEncoderConfig, images: int = 0) -> PrefetchingImageEncoder:
    """The configured image model, for a job of about `images` images."""
    if cfg.model == "efficientnet-lite0":
        return EfficientNetLite0(cfg, images)
    from mmgr.encoders.clip import ClipImageEncoder

    return ClipImageEncoder(cfg)
