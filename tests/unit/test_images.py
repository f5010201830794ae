"""Images users bring: odd modes, animated files, wrong extensions, truncated and corrupt files and decompression
bombs are either converted to RGB correctly or masked with the reason, at import and at encode time; never a crash,
and PIL's global settings are left alone. Every file is generated here with PIL."""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image, ImageFile

from mmgr.data.builder import ItemRecord
from mmgr.data.images import MAX_PIXELS, check_images, image_problem, load_rgb
from mmgr.data.problems import Problems
from mmgr.encoders.base import encode_items
from mmgr.encoders.cache import VectorCache
from mmgr.encoders.image import CROP, RESIZE, EfficientNetLite0, load_image_array

_Y, _X = np.mgrid[0:40, 0:60]
NOISE = np.dstack([_X * 4, _Y * 6, 255 - _X * 4]).astype(np.uint8)   # smooth (JPEG keeps it), every pixel distinct


def write(folder, name: str) -> str:
    """Write the test image `name` into `folder`; returns its path."""
    path = folder / name
    rgb = Image.fromarray(NOISE)
    if name == "photo.jpg":
        rgb.save(path, quality=95)
    elif name == "photo.png":
        rgb.save(path)
    elif name == "png-named.jpg":          # wrong extension: the content decides
        rgb.save(path, format="PNG")
    elif name == "jpeg-named.gif":
        rgb.save(path, format="JPEG", quality=95)
    elif name == "cmyk.jpg":
        Image.new("CMYK", (60, 40), (0, 255, 255, 0)).save(path)   # pure red in CMYK
    elif name == "grey16.png":
        grey = np.full((40, 60), 40000, dtype=np.uint16)
        Image.fromarray(grey).save(path)
    elif name == "palette.png":
        rgb.convert("P", palette=Image.Palette.ADAPTIVE).save(path)
    elif name == "transparent.png":
        rgba = np.dstack([NOISE, np.zeros((40, 60), np.uint8)])    # fully transparent: white, not the hidden RGB
        Image.fromarray(rgba).save(path)
    elif name == "animated.gif":
        frames = [Image.new("RGB", (30, 30), colour) for colour in ("red", "blue", "lime")]
        frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    elif name == "bilevel.png":
        Image.new("1", (30, 30), 1).save(path)
    elif name == "truncated.jpg":
        rgb.save(path, quality=95)
        path.write_bytes(path.read_bytes()[:len(path.read_bytes()) // 2])
    elif name == "truncated.png":
        rgb.save(path)
        path.write_bytes(path.read_bytes()[:len(path.read_bytes()) // 2])
    elif name == "corrupt.jpg":
        path.write_bytes(b"<html>not found</html>" * 20)
    elif name == "empty.png":
        path.write_bytes(b"")
    elif name == "bomb.png":               # 81 Mpx of zeros: 80 kB on disk, 81 MB decoded
        Image.new("L", (9000, 9000)).save(path)
    elif name == "pil-bomb.png":           # beyond PIL's own limit (it raises before we look)
        Image.new("1", (20000, 20000)).save(path)
    else:
        raise ValueError(name)
    return str(path)


GOOD = {   # file -> RGB at the centre of the decoded first frame (None: compare with the source noise)
    "photo.png": None, "png-named.jpg": None, "photo.jpg": "jpeg", "jpeg-named.gif": "jpeg",
    "cmyk.jpg": (255, 0, 0), "grey16.png": (156, 156, 156), "transparent.png": (255, 255, 255),
    "animated.gif": (255, 0, 0), "bilevel.png": (255, 255, 255), "palette.png": "palette",
}
BAD = {   # file -> words of the reason
    "truncated.jpg": "truncated", "truncated.png": "truncated", "corrupt.jpg": "not a readable image",
    "empty.png": "not a readable image", "bomb.png": f"more than the {MAX_PIXELS:,} allowed",
    "pil-bomb.png": "decompression bomb", "absent.png": "file not found",
}


@pytest.mark.parametrize("name", GOOD)
def test_readable_images_become_rgb_first_frame(tmp_path, name):
    path = write(tmp_path, name)
    assert image_problem(path) is None
    image = load_rgb(path)
    assert image.mode == "RGB"
    centre = image.getpixel((image.width // 2, image.height // 2))
    expected = GOOD[name]
    if expected is None:
        assert np.array_equal(np.asarray(image), NOISE)
    elif expected in ("jpeg", "palette"):   # lossy: close to the source on average
        assert image.size == (60, 40) and np.abs(np.asarray(image, dtype=float) - NOISE).mean() < 25
    else:
        assert np.abs(np.subtract(centre, expected)).max() <= 2, centre


@pytest.mark.parametrize("name", BAD)
def test_unusable_images_are_refused_with_the_reason(tmp_path, name):
    path = str(tmp_path / name) if name == "absent.png" else write(tmp_path, name)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)   # PIL's warning must not leak
        reason = image_problem(path)
    assert reason is not None and BAD[name].lower() in reason.lower(), reason


def test_pil_global_settings_are_left_alone(tmp_path):
    before = (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES)
    for name in ("bomb.png", "truncated.jpg", "photo.png"):
        image_problem(write(tmp_path, name))
    assert before == (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES)


def test_import_check_masks_and_counts_each_reason(tmp_path):
    records = [ItemRecord("ok", image=write(tmp_path, "photo.png")),
               ItemRecord("cmyk", image=write(tmp_path, "cmyk.jpg")),
               ItemRecord("cut", image=write(tmp_path, "truncated.jpg")),
               ItemRecord("bomb", image=write(tmp_path, "bomb.png")),
               ItemRecord("gone", image=str(tmp_path / "gone.jpg")),
               ItemRecord("none")]
    problems = Problems()
    check_images(records, problems)
    assert [r.image is not None for r in records] == [True, True, False, False, False, False]
    found = problems.as_dict()
    unreadable = found["items whose image is missing or unreadable (image modality masked)"]
    assert unreadable["count"] == 3
    shown = " ".join(unreadable["examples"])
    assert "'cut'" in shown and "truncated" in shown.lower() and "'bomb'" in shown and "allowed" in shown
    assert found["items without an image (image modality masked)"]["count"] == 1


def _old_preprocessing(path: str) -> np.ndarray:
    """The preprocessing before image handling was hardened, for ordinary RGB files."""
    with Image.open(path) as image:
        image = image.convert("RGB")
        scale = RESIZE / min(image.size)
        image = image.resize((max(CROP, round(image.width * scale)), max(CROP, round(image.height * scale))),
                             Image.Resampling.BICUBIC)
        left, top = (image.width - CROP) // 2, (image.height - CROP) // 2
        return np.asarray(image.crop((left, top, left + CROP, top + CROP)), dtype=np.uint8)


def test_ordinary_images_preprocess_as_before_and_strips_stay_bounded(tmp_path):
    for name in ("photo.jpg", "photo.png"):
        path = write(tmp_path, name)
        assert np.array_equal(load_image_array(path), _old_preprocessing(path))
    strip = tmp_path / "strip.png"     # 1:500 -> resized naively it would be 256 x 128,000 pixels
    Image.new("RGB", (4, 2000), "blue").save(strip)
    array = load_image_array(strip)
    assert array.shape == (CROP, CROP, 3) and tuple(array[CROP // 2, CROP // 2]) == (0, 0, 255)


def items_table(paths: list[str | None]) -> pa.Table:
    n = len(paths)
    return pa.table({"item_id": [f"i{k}" for k in range(n)], "image": paths,
                     "has_image": [p is not None for p in paths]})


def test_encoder_masks_what_fails_at_encode_time_and_never_caches_it(tmp_path):
    good = [write(tmp_path, name) for name in ("photo.png", "cmyk.jpg", "animated.gif", "grey16.png")]
    broken = write(tmp_path, "truncated.jpg")          # e.g. a file damaged after import
    gone = str(tmp_path / "deleted.png")
    shutil.copy(good[0], gone)
    items = items_table([*good, broken, gone, None])
    (tmp_path / "deleted.png").unlink()
    cache = VectorCache(tmp_path / "cache")
    encoder = EfficientNetLite0()
    features = encode_items(encoder, items, cache, progress=False)
    assert features.missing.tolist() == [False, False, False, False, True, True, True]
    assert np.isfinite(features.vectors).all() and not features.vectors[4:].any()
    assert features.info["unreadable"] == 2 and features.info["missing"] == 3
    shown = " ".join(features.info["unreadable_examples"])
    assert "'i4'" in shown and "truncated" in shown.lower() and "'i5'" in shown
    again = encode_items(encoder, items, cache, progress=False)   # the good ones come from the cache
    assert again.info["from_cache"] == 4 and again.info["computed"] == 1 and again.info["unreadable"] == 2
    np.testing.assert_array_equal(again.vectors, features.vectors)
    with pytest.raises(Exception, match="truncated"):   # a direct caller (onboarding) gets an error, not zeros
        encoder.encode([broken])
