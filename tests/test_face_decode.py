"""Untrusted image bytes decode to RGB uint8 or fail with a clear InvalidImageError, never a crash."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from orchestrator.face import InvalidImageError, decode_image, limit_size

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="module")
def portrait() -> Image.Image:
    return Image.open(SHARED / "examples" / "source" / "s0.jpg").convert("RGB")


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def test_rgb_jpeg(portrait):
    out = decode_image(encode(portrait, "JPEG"))
    assert out.dtype == np.uint8 and out.shape == (portrait.height, portrait.width, 3)


@pytest.mark.parametrize("mode", ["L", "CMYK", "RGBA", "LA", "P", "I;16"])
def test_other_modes_become_rgb(portrait, mode):
    if mode == "I;16":
        image = Image.fromarray((np.asarray(portrait.convert("L"), np.uint16) * 257))
        fmt = "PNG"
    else:
        image = portrait.convert(mode)
        fmt = "JPEG" if mode in ("L", "CMYK") else "PNG"
    out = decode_image(encode(image, fmt))
    assert out.dtype == np.uint8 and out.shape == (portrait.height, portrait.width, 3)
    gray = np.asarray(portrait.convert("L"), np.float64)
    assert abs(out.mean() - gray.mean()) < 25  # same picture, not black / white / garbage


def test_alpha_is_dropped_like_the_official_reader():
    """Issue 13 defect 8: alpha is dropped and the colour channels kept (the official cv2.imread IMREAD_COLOR), not
    composited over white; transparent pixels keep the colour stored under them."""
    import cv2

    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[:, :20] = (255, 0, 0, 255)
    rgba[:, 20:] = (10, 120, 30, 0)  # fully transparent, colour kept
    rgba[:10, 20:] = (0, 0, 200, 128)  # half transparent
    data = encode(Image.fromarray(rgba), "PNG")
    out = decode_image(data)
    assert (out[:, :20] == (255, 0, 0)).all() and (out[10:, 20:] == (10, 120, 30)).all()
    assert (out[:10, 20:] == (0, 0, 200)).all()
    official = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(out, official)
    la = np.zeros((40, 40, 2), np.uint8)
    la[..., 0], la[..., 1] = 90, 0
    assert (decode_image(encode(Image.fromarray(la, "LA"), "PNG")) == 90).all()


def test_exif_orientation_is_applied(portrait):
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: rotate 90 degrees clockwise to display
    out = decode_image(encode(portrait, "JPEG", exif=exif.tobytes()))
    assert out.shape[:2] == (portrait.width, portrait.height)


@pytest.mark.parametrize("data, message", [
    (b"", "empty"),
    (b"definitely not an image" * 10, "not an image"),
])
def test_garbage_is_rejected(data, message):
    with pytest.raises(InvalidImageError, match=message):
        decode_image(data)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_file_is_rejected(portrait, fmt):
    data = encode(portrait, fmt)
    with pytest.raises(InvalidImageError, match="truncated or corrupt"):
        decode_image(data[: len(data) // 2])


@pytest.mark.parametrize("size, message", [((4000, 100), "aspect ratio"), ((8, 8), "too small")])
def test_degenerate_sizes_are_rejected(size, message):
    with pytest.raises(InvalidImageError, match=message):
        decode_image(encode(Image.new("RGB", size, (120, 120, 120)), "PNG"))


def test_limit_size_like_official():
    image = np.zeros((1001, 2561, 3), np.uint8)
    out = limit_size(image, max_dim=1280, division=2)
    assert max(out.shape[:2]) <= 1280 and out.shape[0] % 2 == 0 and out.shape[1] % 2 == 0
