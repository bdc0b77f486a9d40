"""Paste the animated 512x512 crop back into the full-resolution source with a feathered mask, inside the mask's box.

The mask is generated here (a square that is 1 inside and falls smoothly to 0 over ``feather`` pixels at the crop
border, like the official ``mask_template.png``). The official ``prepare_paste_back`` warps it into the whole source
image and ``paste_back`` warps every crop into the whole image too; outside the mask's bounding box the result is
the source itself. Here the box is found once per request (from the crop's corners, then tightened to the warped
mask), the mask is warped into the box only, and every crop is warped straight into the box (the crop -> image
affine translated by the box's corner, ``dsize`` = the box) and blended there: the official result, up to
warpAffine's rounding of the translated matrix (``tests/golden.py::assert_warped_close``).

Several faces of one image: ``paste_faces`` pastes them into one frame in order. This RGB path serves images (PNG,
JPEG) and live frames; videos are pasted back in YUV 4:2:0 (``yuv_paste``), with the same boxes.
"""
from __future__ import annotations

import cv2
import numpy as np

Box = tuple[int, int, int, int]  # y0, y1, x0, x1 (half-open), image pixels
EMPTY: Box = (0, 0, 0, 0)


def feathered_mask(size: int = 512, feather: int = 16) -> np.ndarray:
    """size x size x 3 uint8: 255 inside, a smooth (smoothstep) ramp to 0 over ``feather`` px at the border."""
    index = np.arange(size, dtype=np.float64)
    edge = np.minimum(index, size - 1 - index)  # pixels between each pixel and the outermost row/column, per axis
    ramp = np.clip(edge / feather, 0.0, 1.0)
    ramp = ramp * ramp * (3 - 2 * ramp)
    mask = np.round(255 * np.minimum.outer(ramp, ramp)).astype(np.uint8)
    return np.repeat(mask[:, :, None], 3, axis=2)


def _nonzero_box(mask: np.ndarray) -> Box:
    """The bounding box of a mask's nonzero pixels (any channel); EMPTY when there are none."""
    plane = mask if mask.ndim == 2 else np.maximum.reduce([mask[..., c] for c in range(mask.shape[2])])
    rows, cols = np.flatnonzero(plane.any(axis=1)), np.flatnonzero(plane.any(axis=0))
    if not len(rows):
        return EMPTY
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def box_matrix(M_c2o: np.ndarray, box: Box, scale: float = 1.0) -> np.ndarray:
    """The 2x3 crop -> box affine: ``translate(-x0, -y0) @ M_c2o`` (``scale``: the box's corner in a plane of
    ``scale`` times the image's resolution, 0.5 for chroma)."""
    y0, _, x0, _ = box
    m = np.asarray(M_c2o, np.float64)[:2].copy()
    m[:, 2] -= (x0 * scale, y0 * scale)
    return m


def warp_into(crop: np.ndarray, M_box: np.ndarray, box: Box) -> np.ndarray:
    """The crop warped into the box only (bilinear, black outside the crop, as the official full-image warp)."""
    y0, y1, x0, x1 = box
    return cv2.warpAffine(crop, M_box, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR)


def mask_in_box(mask_crop: np.ndarray, M_c2o: np.ndarray, image_hw: tuple[int, int]) -> tuple[Box, np.ndarray]:
    """The box of the crop mask warped into the image, and the warped mask inside it (uint8, as ``mask_crop``).

    A bilinear warp reaches at most one crop pixel beyond the mask's nonzero pixels, so the box of the transformed
    corners of that area (plus a pixel of margin, clipped to the image) holds every nonzero pixel; the mask is warped
    into that box only and the box tightened to its nonzero pixels (the box the full-image warp would give)."""
    h, w = image_hw
    cy0, cy1, cx0, cx1 = _nonzero_box(mask_crop)
    if (cy0, cy1, cx0, cx1) == EMPTY:
        return EMPTY, np.zeros((0, 0) + mask_crop.shape[2:], mask_crop.dtype)
    corners = np.array([[cx0 - 1, cy0 - 1], [cx1, cy0 - 1], [cx0 - 1, cy1], [cx1, cy1]], np.float64)
    m = np.asarray(M_c2o, np.float64)
    points = corners @ m[:2, :2].T + m[:2, 2]
    x0, y0 = np.floor(points.min(axis=0)).astype(int) - 1
    x1, y1 = np.ceil(points.max(axis=0)).astype(int) + 2
    around = (max(0, int(y0)), min(h, int(y1)), max(0, int(x0)), min(w, int(x1)))
    if around[0] >= around[1] or around[2] >= around[3]:
        return EMPTY, np.zeros((0, 0) + mask_crop.shape[2:], mask_crop.dtype)
    warped = warp_into(mask_crop, box_matrix(m, around), around)
    ty0, ty1, tx0, tx1 = _nonzero_box(warped)
    if (ty0, ty1, tx0, tx1) == EMPTY:
        return EMPTY, warped[:0, :0]
    box = (around[0] + ty0, around[0] + ty1, around[2] + tx0, around[2] + tx1)
    return box, np.ascontiguousarray(warped[ty0:ty1, tx0:tx1])


class PasteBack:
    """Blends crops into one source image (RGB) with one crop transform (per request), inside the mask's box."""

    def __init__(self, image: np.ndarray, M_c2o: np.ndarray, mask_crop: np.ndarray):
        self.image = image
        self.M_c2o = np.asarray(M_c2o, np.float32)
        self.box, mask = mask_in_box(mask_crop, self.M_c2o, image.shape[:2])
        self.mask = mask.astype(np.float32) / 255.0  # the official float mask, inside the box
        y0, y1, x0, x1 = self.box
        self._M_box = box_matrix(self.M_c2o, self.box)
        # the request's constant part of the blend, inside the box: the source under (1 - mask)
        self._source_part = (1 - self.mask) * image[y0:y1, x0:x1]

    @property
    def nbytes(self) -> int:
        return self.mask.nbytes + self._source_part.nbytes

    def full_mask(self) -> np.ndarray:
        """The mask over the whole image (the official ``prepare_paste_back`` result; for checks)."""
        full = np.zeros(self.image.shape[:2] + self.mask.shape[2:], np.float32)
        y0, y1, x0, x1 = self.box
        full[y0:y1, x0:x1] = self.mask
        return full

    def __call__(self, crop: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """The official paste-back of ``crop``. ``out``: a frame that holds the source outside this face's box (a
        copy of the source, or an earlier result of this paste-back), written in place; None: a new frame."""
        out = self.image.copy() if out is None else out
        if self.box == EMPTY:
            return out
        y0, y1, x0, x1 = self.box
        blend = warp_into(crop, self._M_box, self.box).astype(np.float32)  # the official blend, in place
        blend *= self.mask
        blend += self._source_part
        out[y0:y1, x0:x1] = np.clip(blend, 0, 255, out=blend)  # the assignment truncates like astype(uint8)
        return out

    def onto(self, frame: np.ndarray, crop: np.ndarray) -> np.ndarray:
        """The same blend over ``frame`` (the source with other faces already pasted in) instead of the source, in
        place: inside this face's mask the crop is blended with what ``frame`` holds there."""
        if self.box == EMPTY:
            return frame
        y0, y1, x0, x1 = self.box
        blend = warp_into(crop, self._M_box, self.box).astype(np.float32)
        blend *= self.mask
        blend += (1 - self.mask) * frame[y0:y1, x0:x1]
        frame[y0:y1, x0:x1] = np.clip(blend, 0, 255, out=blend)
        return frame

    def restore(self, frame: np.ndarray) -> None:
        """The source back into this face's box of ``frame`` (a reused frame, before other faces are blended)."""
        y0, y1, x0, x1 = self.box
        frame[y0:y1, x0:x1] = self.image[y0:y1, x0:x1]


def paste_faces(pastes: list[PasteBack], crops: list[np.ndarray], out: np.ndarray | None = None) -> np.ndarray:
    """One frame with several animated faces (one crop each, same source image): pasted back in order, each blended
    over the frame so far, so where two masks overlap the later face is blended over the earlier one. ``out``: an
    earlier result of the same pastes, reused (the later faces' boxes get the source back first)."""
    if out is not None:
        for paste in pastes[1:]:
            paste.restore(out)
    frame = pastes[0](crops[0], out)
    for paste, crop in zip(pastes[1:], crops[1:]):
        paste.onto(frame, crop)
    return frame
