"""Item images: resolve references, check that each decodes, and turn any file PIL reads into one RGB picture.

Every decoder in mmgr opens images through `open_image` / `load_rgb`, so they all refuse the same files for the same
reasons (`UnreadableImage.reason`, recorded with the item wherever it is masked):

- a file that is not an image of a known raster format (whatever its extension says: the content decides, so a PNG
  named `.jpg` is read as the PNG it is); only raster formats are tried (no EPS/PDF, which would run Ghostscript);
- a truncated or corrupt file (the first frame is decoded completely; PIL's global `LOAD_TRUNCATED_IMAGES` is left
  as it is);
- a decompression bomb: more than `MAX_PIXELS` pixels, checked from the header before any pixel is decoded (PIL's
  global `Image.MAX_IMAGE_PIXELS` is left as it is);
- a colour mode with no conversion to RGB.

What is read is converted to RGB: CMYK and YCbCr through PIL; 16-bit and 32-bit greyscale scaled to 8 bits (not
clipped to white); palette, grey and RGB images with transparency composited on white; animated images (GIF, APNG,
WebP) contribute their first frame.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
from PIL import Image, UnidentifiedImageError

from mmgr.data.problems import Problems
from mmgr.errors import MmgrError

if TYPE_CHECKING:
    from mmgr.data.builder import ItemRecord

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp")
RASTER_FORMATS = ("JPEG", "MPO", "PNG", "WEBP", "GIF", "BMP", "TIFF")   # what Image.open may identify
MAX_PIXELS = 64_000_000          # 8000 x 8000; product photos and posters are far smaller
CHECK_SIZE = (128, 128)          # import-time check: JPEGs decode at a reduced scale (every byte is still read)
WIDE_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")


class UnreadableImage(MmgrError):
    """An image file mmgr does not use; `reason` says why (missing, not an image, truncated, too large...)."""

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path, self.reason = Path(path), reason
        super().__init__(f"{path}: {reason}")


def is_url(ref: str) -> bool:
    return ref.startswith(("http://", "https://"))


def images_by_stem(folder: Path) -> dict[str, Path]:
    """Map file stem (the item id) -> image path for every image file in `folder`."""
    return {p.stem: p for p in sorted(Path(folder).iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}


def image_inputs(items: pa.Table) -> list[str | None]:
    """Local image path per item; None where the image is missing (URLs are not fetched at encode time)."""
    return [ref if ok and ref and not is_url(ref) else None
            for ref, ok in zip(items["image"].to_pylist(), items["has_image"].to_pylist(), strict=True)]


def check_images(items: list[ItemRecord], problems: Problems) -> None:
    """Verify local images decode (URLs are kept as they are); mask (None) and count the rest. A source that gives no
    item an image (a codes-only or text-only dataset) is one fact, not a problem per item."""
    if items and all(record.image is None for record in items):
        problems.add("no item has an image (the source gives none; image SIDs can come from a table)",
                     count=len(items))
        return
    for record in items:
        if record.image is None:
            problems.add("items without an image (image modality masked)", f"item {record.item_id!r}")
            continue
        if is_url(record.image):
            continue
        path = Path(record.image)
        reason = image_problem(path)
        if reason:
            problems.add("items whose image is missing or unreadable (image modality masked)",
                         f"item {record.item_id!r}: {reason}", path=path, field="image")
            record.image = None
        else:
            record.image = str(path.resolve())


def image_problem(path: Path | str, max_pixels: int = MAX_PIXELS) -> str | None:
    """Why the image at `path` cannot be used, or None when its first frame decodes and converts to RGB."""
    try:
        with open_image(path, max_pixels) as image:
            image.draft("RGB", CHECK_SIZE)   # JPEG: decode at 1/2..1/8 scale; other formats ignore it
            to_rgb(image, path)
    except UnreadableImage as exc:
        return exc.reason
    return None


@functools.cache
def raster_formats() -> tuple[str, ...]:
    """The `RASTER_FORMATS` this PIL build reads (PIL registers its plugins on first use, as it does itself)."""
    Image.init()
    return tuple(name for name in RASTER_FORMATS if name in Image.OPEN)


@contextmanager
def open_image(path: Path | str, max_pixels: int = MAX_PIXELS) -> Iterator[Image.Image]:
    """The image at `path`, opened lazily at its first frame, once its size is known to be at most `max_pixels`.
    Raises `UnreadableImage` for a missing file, an unknown format or a decompression bomb."""
    path = Path(path)
    if not path.is_file():
        raise UnreadableImage(path, "file not found")
    try:
        with warnings.catch_warnings():   # PIL warns above its own limit; ours is lower and checked below
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path, formats=raster_formats())
    except Image.DecompressionBombError as exc:
        raise UnreadableImage(path, f"too many pixels (decompression bomb?): {exc}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise UnreadableImage(path, f"not a readable image ({exc.__class__.__name__}: {exc})") from None
    with image:
        width, height = image.size
        if width * height > max_pixels:
            raise UnreadableImage(path, f"{width}x{height} = {width * height:,} pixels is more than the "
                                        f"{max_pixels:,} allowed (decompression bomb?)")
        if width < 1 or height < 1:
            raise UnreadableImage(path, f"empty image ({width}x{height})")
        yield image


def load_rgb(path: Path | str, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """The first frame of the image at `path` as a fully decoded RGB image; raises `UnreadableImage`."""
    with open_image(path, max_pixels) as image:
        return to_rgb(image, path)


def to_rgb(image: Image.Image, path: Path | str = "image") -> Image.Image:
    """Decode `image`'s current frame and convert it to 8-bit RGB (see the module docstring for each mode)."""
    try:
        image.load()
        if image.mode in WIDE_MODES:
            return Image.fromarray(_eight_bit(np.asarray(image), image.mode)).convert("RGB")
        if image.mode in ALPHA_MODES or "transparency" in image.info:
            rgba = image.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return Image.alpha_composite(white, rgba).convert("RGB")
        return image.convert("RGB") if image.mode != "RGB" else image.copy()
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as exc:
        raise UnreadableImage(path, f"cannot decode image ({exc.__class__.__name__}: {exc})") from None


def _eight_bit(values: np.ndarray, mode: str) -> np.ndarray:
    """uint8 greyscale from 16-bit, 32-bit integer or float (`mode` F) pixels: floats in [0, 1] and values in the
    8-bit or 16-bit range scaled to [0, 255]; anything wider by its maximum."""
    values = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0).clip(min=0.0)
    top = float(values.max()) if values.size else 0.0
    if mode == "F" and top <= 1.0:
        scale = 255.0
    elif top <= 255.0 and mode in ("I", "F"):   # 32-bit modes holding 8-bit values
        scale = 1.0
    elif top <= 65535.0:
        scale = 255.0 / 65535.0
    else:
        scale = 255.0 / top
    return np.round(values * scale).clip(0, 255).astype(np.uint8)
