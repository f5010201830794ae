"""Image references in the catalog: resolve, verify readability, mask what is missing."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image, UnidentifiedImageError

from mmgr.data.problems import Problems

if TYPE_CHECKING:
    from mmgr.data.builder import ItemRecord

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp")


def is_url(ref: str) -> bool:
    return ref.startswith(("http://", "https://"))


def images_by_stem(folder: Path) -> dict[str, Path]:
    """Map file stem (the item id) -> image path for every image file in `folder`."""
    return {p.stem: p for p in sorted(Path(folder).iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}


def check_images(items: list[ItemRecord], problems: Problems) -> None:
    """Verify local images decode (URLs are kept as they are); mask (None) and count the rest."""
    for record in items:
        if record.image is None:
            problems.add("items without an image (image modality masked)", f"item {record.item_id!r}")
            continue
        if is_url(record.image):
            continue
        path = Path(record.image)
        reason = _unreadable(path)
        if reason:
            problems.add("items whose image is missing or unreadable (image modality masked)",
                         f"item {record.item_id!r}: {reason}", path=path, field="image")
            record.image = None
        else:
            record.image = str(path.resolve())


def _unreadable(path: Path) -> str | None:
    if not path.is_file():
        return "file not found"
    try:
        with Image.open(path) as image:
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        return f"cannot decode image ({exc.__class__.__name__}: {exc})"
    return None
