"""Onboarding a new item into a trained generative run without refitting anything.

The item's text (and image, when the layout reads image codes) is encoded with the run's own encoders, quantized
with the run's fitted tokenizers (`tokenizers/<modality>`), and its collision resolved as the run resolved them:
`append` numbers it after the items that share its tuple (within the extra level's stored capacity), `reassign`
moves it to its next-nearest free last-level code. An item without an image gets the missing-modality code. The
new codes must fit the run's vocabulary (the model has an embedding for every token); otherwise it is refused.

Onboarded items live in `serving/onboarded.sqlite` (`mmgr.serving.store`: one transaction per item, shared by every
server on the run); a restarted server replays them. An item's image is written to `serving/images/` inside that
transaction, and removed again if it fails; an image no onboarded item refers to (a crash between the two) is swept
at the next start. Items of an `onboarded.json` (where earlier versions kept them, rewritten on every onboarding) are
imported into the database once, checked as before, and the file renamed to `onboarded.json.imported`.

A new item's id is 1 to 200 characters, not blank, without `/` (`GET /items/{id}` could not reach it) and without
control or other non-printing characters.
"""

from __future__ import annotations

import hashlib
import io
import json
import unicodedata
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pyarrow as pa

from mmgr.config import Config
from mmgr.data.dataset import ITEM_SCHEMA
from mmgr.errors import MmgrError, quoted
from mmgr.io import write_bytes_atomic
from mmgr.rundir import RunDir
from mmgr.tokenizers.codes import ModalityCodes

LEGACY = Path("serving") / "onboarded.json"
IMAGES = Path("serving") / "images"
IMAGE_FORMATS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp"}
MAX_IMAGE_BYTES = 5 << 20
MAX_IMAGE_PIXELS = 50_000_000          # width x height: a larger picture (or a header claiming one) is refused
MAX_ITEM_ID = 200
FIELD_TYPES = {"item_id": str, "title": str, "description": str, "brand": str, "categories": list,
               "image": (str, type(None))}


class OnboardError(MmgrError):
    """An item that cannot be onboarded into this run (the server answers 409 with the message)."""


class BadUpload(MmgrError):
    """A new item refused as sent: a malformed id or image (the server answers 422)."""


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


def check_item_id(item_id: str) -> None:
    """Refuse an id that is blank, longer than MAX_ITEM_ID, has a `/` or a non-printing character."""
    if not item_id.strip() or len(item_id) > MAX_ITEM_ID:
        raise BadUpload(f"item_id must be 1 to {MAX_ITEM_ID} characters and not blank")
    if "/" in item_id:
        raise BadUpload(f"item_id {quoted(item_id)} has a '/', which GET /items cannot fetch")
    if any(unicodedata.category(char).startswith("C") for char in item_id):
        raise BadUpload(f"item_id {quoted(item_id)} has a control or other non-printing character")


def check_image(data: bytes) -> str:
    """Check an uploaded image (bytes, pixels, decodable, JPEG/PNG/WebP); returns the run path it will be kept
    under, named by its content. Nothing is written here: see `kept_image`."""
    from PIL import Image, UnidentifiedImageError

    if len(data) > MAX_IMAGE_BYTES:
        raise BadUpload(f"image is {len(data)} bytes; at most {MAX_IMAGE_BYTES} are accepted")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                kind, pixels = image.format, image.width * image.height
                if pixels > MAX_IMAGE_PIXELS:
                    raise BadUpload(f"image is {image.width} x {image.height} pixels; at most {MAX_IMAGE_PIXELS} "
                                    "pixels are accepted")
                image.verify()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise BadUpload(f"image claims more than {MAX_IMAGE_PIXELS} pixels; at most that many are accepted") from None
    except (UnidentifiedImageError, OSError, SyntaxError):
        raise BadUpload(f"image is not a readable picture (use {', '.join(IMAGE_FORMATS)})") from None
    if kind not in IMAGE_FORMATS:
        raise BadUpload(f"image format {kind} is not accepted (use {', '.join(IMAGE_FORMATS)})")
    return (IMAGES / (hashlib.sha256(data).hexdigest()[:24] + IMAGE_FORMATS[kind])).as_posix()


@contextmanager
def kept_image(run: RunDir, item: NewItem, data: bytes | None) -> Iterator[None]:
    """The item's image written for the block (when `data` is given and no earlier item shares the file), and
    removed again if the block fails."""
    path = run.path / item.image if item.image and data is not None else None
    written = path is not None and not path.exists()
    if written:
        write_bytes_atomic(path, data)
    try:
        yield
    except BaseException:
        if written:
            path.unlink(missing_ok=True)
        raise


def sweep_images(run: RunDir, used: set[str]) -> int:
    """Delete the files of serving/images/ that are not in `used` (the onboarded items' images); returns how many."""
    folder = run.path / IMAGES
    if not folder.is_dir():
        return 0
    orphans = [path for path in folder.iterdir() if path.is_file() and (IMAGES / path.name).as_posix() not in used]
    for path in orphans:
        path.unlink()
    return len(orphans)


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
            self._encoders[modality] = item_encoder(modality, self.config.encoders, row)
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
        """The new item's code by the tested rule of fitted tokenizers (`tokenizers.pipeline.assign_new`), with the
        collision rule the run's codes were made with, unique against the catalog items that have this modality."""
        from mmgr.tokenizers.pipeline import assign_new

        tokenizer = self._tokenizer(modality)             # a damaged tokenizer is the run's problem (422), not a clash
        present = ~existing.missing
        catalog = existing if present.all() else ModalityCodes(modality, existing.codes[present], existing.sizes,
                                                               existing.missing[present], existing.info)
        try:
            return assign_new(tokenizer, catalog, features, existing.info["collisions"])[0]
        except MmgrError as exc:                         # the disambiguation level is full, or no free code is left
            raise OnboardError(f"{modality}: {exc}") from None


def load_onboarded(run: RunDir) -> list[dict[str, Any]]:
    """The records of an `onboarded.json` (to import); a damaged file is an error naming it (and the entry)."""
    path = run.path / LEGACY
    if not path.is_file():
        return []
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MmgrError(f"{path}: not valid JSON ({exc}); restore it or move it away to start without the "
                        "onboarded items") from None
    entries = document.get("items") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise MmgrError(f"{path}: expected an object with an `items` list")
    for number, entry in enumerate(entries, start=1):
        check_entry(entry, f"{path}: entry {number}")
    return entries


def check_entry(entry: Any, where: str) -> None:
    """Refuse a record that is not an item with codes, or whose image lies outside serving/images/."""
    if not (isinstance(entry, dict) and all(isinstance(entry.get(key), dict) for key in ("item", "codes", "missing"))):
        raise MmgrError(f"{where}: expected an object with `item`, `codes` and `missing` objects")
    item = entry["item"]
    typed = all(key in FIELD_TYPES and isinstance(value, FIELD_TYPES[key]) for key, value in item.items())
    if not (typed and "item_id" in item and "title" in item and all(isinstance(c, str)
                                                                    for c in item.get("categories", []))):
        raise MmgrError(f"{where}: `item` needs string item_id and title, and may have only "
                        f"{', '.join(FIELD_TYPES)} (categories a list of strings)")
    image = item.get("image")
    if image is not None and not in_images(image):
        raise MmgrError(f"{where} ({quoted(item['item_id'])}): image {quoted(image)} is not a file in "
                        f"{IMAGES.as_posix()}/")


def record(item: NewItem, codes: dict[str, ModalityCodes]) -> dict[str, Any]:
    """What the onboarding database keeps of an item: its fields and its codes per modality (the last rows)."""
    return {"item": asdict(item), "codes": {m: c.codes[-1].tolist() for m, c in codes.items()},
            "missing": {m: bool(c.missing[-1]) for m, c in codes.items()}}


def in_images(image: str) -> bool:
    """Whether a recorded image path names a file directly in serving/images/."""
    path = PurePosixPath(image)
    return path.parent == PurePosixPath(IMAGES.as_posix()) and path.name not in ("", ".", "..")


def replayed(codes: dict[str, ModalityCodes], entry: dict[str, Any], where: str) -> dict[str, ModalityCodes]:
    """`codes` with a recorded item's rows appended; codes of other modalities or lengths are an error."""
    if set(entry["codes"]) != set(codes) or set(entry["missing"]) != set(codes):
        raise MmgrError(f"{where}: codes for {sorted(entry['codes'])}, this run has {sorted(codes)}")
    for modality, existing in codes.items():
        code, missing = entry["codes"][modality], entry["missing"][modality]
        if not (isinstance(code, list) and len(code) == existing.codes.shape[1] and isinstance(missing, bool)
                and all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in code)):
            raise MmgrError(f"{where}: {modality} codes must be {existing.codes.shape[1]} non-negative integers "
                            "and `missing` true or false")
    return {m: c.with_row(np.asarray(entry["codes"][m]), entry["missing"][m]) for m, c in codes.items()}
