"""Onboarding a new item into a trained generative run without refitting anything.

The item's text (and image, when the layout reads image codes) is encoded with the run's own encoders, quantized
with the run's fitted tokenizers (`tokenizers/<modality>`), and its collision resolved as the run resolved them:
`append` numbers it after the items that share its tuple (within the extra level's stored capacity), `reassign`
moves it to its next-nearest free last-level code. An item without an image gets the missing-modality code. The
new codes must fit the run's vocabulary (the model has an embedding for every token); otherwise it is refused.

Onboarded items live in `serving/onboarded.json` (the item's fields, codes and image file), rewritten atomically
(temp file + rename) on every onboarding, so after a crash the catalog holds the whole item or none of it; a
restarted server replays the file.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from mmgr.config import Config
from mmgr.data.dataset import ITEM_SCHEMA
from mmgr.errors import MmgrError
from mmgr.io import write_bytes_atomic, write_json_atomic
from mmgr.rundir import RunDir
from mmgr.tokenizers.codes import ModalityCodes

ONBOARDED = Path("serving") / "onboarded.json"
IMAGES = Path("serving") / "images"
IMAGE_FORMATS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp"}
MAX_IMAGE_BYTES = 5 << 20


class OnboardError(MmgrError):
    """An item that cannot be onboarded into this run (the server answers 409 with the message)."""


class BadUpload(MmgrError):
    """An uploaded image that is refused (the server answers 422)."""


@dataclass
class NewItem:
    item_id: str
    title: str
    description: str = ""
    brand: str = ""
    categories: list[str] = field(default_factory=list)
    image: str | None = None                 # file under the run's serving/images/

    def table(self, run: RunDir) -> pa.Table:
        """The item as one catalog row."""
        image = str(run.path / self.image) if self.image else None
        return pa.Table.from_pylist([{"item_id": self.item_id, "title": self.title, "description": self.description,
                                      "brand": self.brand, "categories": self.categories, "image": image,
                                      "has_text": True, "has_image": image is not None}], schema=ITEM_SCHEMA)


def store_image(run: RunDir, data: bytes) -> str:
    """Check an uploaded image (size, decodable, JPEG/PNG/WebP) and keep it in the run; returns its run path."""
    from PIL import Image, UnidentifiedImageError

    if len(data) > MAX_IMAGE_BYTES:
        raise BadUpload(f"image is {len(data)} bytes; at most {MAX_IMAGE_BYTES} are accepted")
    try:
        with Image.open(io.BytesIO(data)) as image:
            kind = image.format
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise BadUpload(f"image is not a readable picture ({exc})") from None
    if kind not in IMAGE_FORMATS:
        raise BadUpload(f"image format {kind} is not accepted (use {', '.join(IMAGE_FORMATS)})")
    relative = IMAGES / (hashlib.sha256(data).hexdigest()[:24] + IMAGE_FORMATS[kind])
    write_bytes_atomic(run.path / relative, data)
    return relative.as_posix()


class Onboarder:
    """Assigns codes to new items with the run's encoders and fitted tokenizers (loaded on first use)."""

    def __init__(self, run: RunDir, config: Config) -> None:
        self.run, self.config = run, config
        self._tokenizers: dict[str, Any] = {}
        self._encoders: dict[str, Any] = {}

    def extend(self, codes: dict[str, ModalityCodes], item: NewItem) -> dict[str, ModalityCodes]:
        """Every modality's codes with the new item's row appended."""
        row = item.table(self.run)
        return {modality: self._append(modality, existing, row) for modality, existing in codes.items()}

    def _append(self, modality: str, existing: ModalityCodes, row: pa.Table) -> ModalityCodes:
        features = self._features(modality, row)
        if features is None:                                     # the missing-modality policy assigns its codes
            code, missing = np.zeros(existing.codes.shape[1], dtype=np.int64), True
        else:
            code, missing = self._resolve(modality, existing, features), False
        return existing.with_row(code, missing)

    def _features(self, modality: str, row: pa.Table) -> np.ndarray | None:
        from mmgr.encoders.stage import item_encoder

        if modality not in ("text", "image"):
            raise OnboardError(f"onboarding encodes text and images; this run's {modality} codes need more "
                               "(fused features or a published table)")
        if modality not in self._encoders:
            self._encoders[modality] = item_encoder(modality, self.config, row)
        encoder = self._encoders[modality]
        inputs = encoder.inputs(row)
        if inputs[0] is None:
            return None
        return np.asarray(encoder.encode([inputs[0]]), dtype=np.float32)          # (1, D)

    def _tokenizer(self, modality: str):
        from mmgr.tokenizers.base import load_tokenizer

        if modality not in self._tokenizers:
            stem = self.run.path / "tokenizers" / modality
            if not stem.with_suffix(".json").is_file():
                raise OnboardError(f"this run's {modality} codes were imported from a table, not fitted: there is "
                                   "no tokenizer to give a new item its code")
            self._tokenizers[modality] = load_tokenizer(stem)
        return self._tokenizers[modality]

    def _resolve(self, modality: str, existing: ModalityCodes, features: np.ndarray) -> np.ndarray:
        tokenizer = self._tokenizer(modality)
        raw = tokenizer.transform(features)[0]                                     # (L,)
        levels = len(raw)
        taken = existing.codes[~existing.missing]
        if existing.codes.shape[1] == levels + 1:                                  # `append`: number it
            extra = int((taken[:, :levels] == raw).all(axis=1).sum())
            if extra >= existing.sizes[-1]:
                raise OnboardError(f"{modality}: {extra} items already share this item's code {raw.tolist()}; the "
                                   f"extra level holds {existing.sizes[-1]}: retokenize to add it")
            return np.append(raw, extra)
        owners = {tuple(r) for r in taken.tolist()}
        for candidate in tokenizer.candidates(features, existing.sizes[-1])[0].tolist():   # `reassign`
            code = np.append(raw[:-1], candidate)
            if tuple(code.tolist()) not in owners:
                return code
        raise OnboardError(f"{modality}: every last-level code under {raw[:-1].tolist()} is taken")


def load_onboarded(run: RunDir) -> list[dict[str, Any]]:
    path = run.path / ONBOARDED
    return json.loads(path.read_text())["items"] if path.is_file() else []


def save_onboarded(run: RunDir, records: list[dict[str, Any]]) -> None:
    write_json_atomic(run.path / ONBOARDED, {"format_version": 1, "items": records})


def record(item: NewItem, codes: dict[str, ModalityCodes]) -> dict[str, Any]:
    """What the onboarding file keeps of an item: its fields and its codes per modality (the last rows)."""
    return {"item": asdict(item), "codes": {m: c.codes[-1].tolist() for m, c in codes.items()},
            "missing": {m: bool(c.missing[-1]) for m, c in codes.items()}}


def replayed(codes: dict[str, ModalityCodes], entry: dict[str, Any]) -> dict[str, ModalityCodes]:
    """`codes` with a recorded item's rows appended."""
    return {m: c.with_row(np.asarray(entry["codes"][m]), entry["missing"][m]) for m, c in codes.items()}
