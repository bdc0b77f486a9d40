"""Decode untrusted image bytes into RGB uint8, or fail with a clear ``InvalidImageError``.

Handles EXIF orientation, grayscale, palette, CMYK, 16-bit and float images, and alpha (dropped: the colour channels
are kept as they are, like the official pipeline's ``cv2.imread(path, cv2.IMREAD_COLOR)``).
Truncated or corrupt files, empty input, unreadable formats, huge and degenerate images are rejected.
"""
from __future__ import annotations

import io
import logging
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageOps

# One image-size limit, the project's (``ImageLimits.max_pixels``), checked on the header before any decoding: Pillow's
# own decompression-bomb check (a warning above 89 M pixels, an error above 179 M, with its own text) is off.
Image.MAX_IMAGE_PIXELS = None
log = logging.getLogger("liveportrait.orchestrator.images")


class InvalidImageError(ValueError):
    """The bytes are not a usable image; the message says why (maps to INVALID_ARGUMENT)."""


@dataclass(frozen=True)
class ImageLimits:
    max_pixels: int = 50_000_000
    min_side: int = 16
    max_aspect: float = 10.0


def decode_image(data: bytes, limits: ImageLimits = ImageLimits()) -> np.ndarray:
    """Image file bytes -> H x W x 3 RGB uint8, upright according to its EXIF orientation."""
    if not data:
        raise InvalidImageError("the image is empty (0 bytes)")
    try:
        with Image.open(io.BytesIO(data)) as opened:
            _check_size(opened.size, limits)
            opened.load()
            image = ImageOps.exif_transpose(opened)
    except InvalidImageError:
        raise
    except Image.UnidentifiedImageError:
        raise InvalidImageError("the data is not an image in a supported format (JPEG, PNG, WebP, BMP, TIFF, ...)") \
            from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:  # the library's words go to the log only
        log.info("an image could not be decoded: %s: %s", type(exc).__name__, exc)
        raise InvalidImageError("the image file is truncated or corrupt (its data ends early or cannot be decoded)") \
            from None
    _check_size(image.size, limits)
    return to_rgb8(image)


def _check_size(size: tuple[int, int], limits: ImageLimits) -> None:
    w, h = size
    if w * h > limits.max_pixels:
        raise InvalidImageError(f"the image is too large: {w}x{h} pixels, more than the limit of "
                                f"{limits.max_pixels:,} pixels")
    if min(w, h) < limits.min_side:
        raise InvalidImageError(f"the image is too small: {w}x{h} pixels (at least {limits.min_side} per side)")
    if max(w, h) / min(w, h) > limits.max_aspect:
        raise InvalidImageError(f"the image aspect ratio is too extreme: {w}x{h} (at most {limits.max_aspect:g}:1)")


def to_rgb8(image: Image.Image) -> np.ndarray:
    """Any Pillow mode -> RGB uint8; high bit depths are scaled down, an alpha channel (or palette transparency) is
    dropped and the colour channels are kept, as the official ``cv2.imread(..., IMREAD_COLOR)`` loads a PNG."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        values = np.asarray(image, np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or values.max() > 255 else 255.0
        gray = np.clip(values / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))
    if image.mode == "P" and "transparency" in image.info or image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        return np.ascontiguousarray(np.asarray(image.convert("RGBA"), np.uint8)[:, :, :3])
    return np.ascontiguousarray(np.asarray(image.convert("RGB"), np.uint8))


def limit_size(image: np.ndarray, max_dim: int = 1280, division: int = 2) -> np.ndarray:
    """Official ``resize_to_limit``: downscale so the long side is at most ``max_dim``, then cut the sides down to
    multiples of ``division``."""
    h, w = image.shape[:2]
    if max_dim > 0 and max(h, w) > max_dim:
        size = (max_dim, int(h * max_dim / w)) if w >= h else (int(w * max_dim / h), max_dim)
        image = cv2.resize(image, size)
    division = max(division, 1)
    h, w = image.shape[:2]
    h2, w2 = h - h % division, w - w % division
    return image if h2 == 0 or w2 == 0 else image[:h2, :w2]
