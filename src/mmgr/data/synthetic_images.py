"""Pictures of the synthetic world's items: the category's shape, filled with the item's colour and pattern, on a
lightly tinted background, with small seeded jitter (tint, shape position and size, pattern phase)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw

CATEGORY_SHAPES = {
    "mug": "circle", "lamp": "triangle", "backpack": "square",
    "sneaker": "star", "watch": "hexagon", "chair": "diamond",
}
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 40, 40), "orange": (245, 140, 20), "yellow": (230, 205, 30), "green": (45, 165, 65),
    "teal": (20, 150, 150), "blue": (40, 80, 215), "purple": (135, 55, 185), "pink": (240, 115, 180),
}
PATTERNS = ("solid", "stripes", "dots", "checks")


def render_image(attributes: dict[str, str], size: int, rng: np.random.Generator) -> bytes:
    """PNG bytes: the category's shape, filled with the colour and pattern, on a lightly tinted background."""
    grey = int(rng.integers(205, 246))
    tint = tuple(int(np.clip(grey + rng.integers(-8, 9), 0, 255)) for _ in range(3))
    background = Image.new("RGB", (size, size), tint)
    fill = _pattern_layer(attributes["pattern"], COLOURS[attributes["colour"]], size, rng)
    mask = Image.new("L", (size, size), 0)
    _draw_shape(ImageDraw.Draw(mask), CATEGORY_SHAPES[attributes["category"]], size, rng)
    image = Image.composite(fill, background, mask)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _pattern_layer(pattern: str, colour: tuple[int, int, int], size: int,
                   rng: np.random.Generator) -> Image.Image:
    """A full-size layer of the colour with the pattern marked in a darker shade of it."""
    layer = Image.new("RGB", (size, size), colour)
    if pattern == "solid":
        return layer
    draw = ImageDraw.Draw(layer)
    dark = tuple(int(c * 0.45) for c in colour)
    period = max(4, size // 8)
    phase = int(rng.integers(period))
    if pattern == "stripes":
        for y in range(-period + phase, size, period):
            draw.rectangle([0, y, size, y + period // 2 - 1], fill=dark)
    elif pattern == "dots":
        radius = max(1.0, period / 4)
        for y in range(phase - period, size + period, period):
            for x in range(phase - period, size + period, period):
                draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=dark)
    elif pattern == "checks":
        for row, y in enumerate(range(-period + phase, size, period)):
            for col, x in enumerate(range(-period + phase, size, period)):
                if (row + col) % 2:
                    draw.rectangle([x, y, x + period - 1, y + period - 1], fill=dark)
    else:
        raise ValueError(f"unknown pattern {pattern!r}")
    return layer


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, size: int, rng: np.random.Generator) -> None:
    """Draw the shape (white on the mask), slightly jittered in position and size."""
    cx, cy = (size / 2 + rng.uniform(-0.06, 0.06) * size for _ in range(2))
    r = size * 0.36 * rng.uniform(0.9, 1.05)
    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
        return
    draw.polygon(_polygon(shape, cx, cy, r), fill=255)


def _polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    """Vertices of a regular shape centred on (cx, cy) with outer radius r."""
    corners = {"triangle": (3, -90.0), "square": (4, 45.0), "diamond": (4, 0.0), "hexagon": (6, 0.0)}
    if shape == "star":
        angles = np.deg2rad(-90.0 + 36.0 * np.arange(10))
        radii = np.where(np.arange(10) % 2 == 0, r, r * 0.45)
    elif shape in corners:
        n, start = corners[shape]
        angles = np.deg2rad(start + 360.0 / n * np.arange(n))
        radii = np.full(n, r)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return [(float(cx + rr * np.cos(a)), float(cy + rr * np.sin(a)))
            for a, rr in zip(angles, radii, strict=True)]
