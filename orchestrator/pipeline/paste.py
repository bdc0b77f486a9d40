"""Paste the animated 512x512 crop back into the full-resolution source with a feathered mask.

The mask is generated here (a square that is 1 inside and falls smoothly to 0 over ``feather`` pixels at the crop
border, like the official ``mask_template.png``), warped into the source once per request (official
``prepare_paste_back``); each frame is then the official ``paste_back`` blend, computed only inside the mask's
bounding box (outside it the source is unchanged, so the result is identical). Several faces of one image:
``paste_faces`` pastes them into one frame in order.
"""
from __future__ import annotations

import cv2
import numpy as np

from ..face.geometry import paste_back_mask


def feathered_mask(size: int = 512, feather: int = 16) -> np.ndarray:
    """size x size x 3 uint8: 255 inside, a smooth (smoothstep) ramp to 0 over ``feather`` px at the border."""
    index = np.arange(size, dtype=np.float64)
    edge = np.minimum(index, size - 1 - index)  # pixels between each pixel and the outermost row/column, per axis
    ramp = np.clip(edge / feather, 0.0, 1.0)
    ramp = ramp * ramp * (3 - 2 * ramp)
    mask = np.round(255 * np.minimum.outer(ramp, ramp)).astype(np.uint8)
    return np.repeat(mask[:, :, None], 3, axis=2)


class PasteBack:
    """Blends crops into one source image with one crop transform (per request)."""

    def __init__(self, image: np.ndarray, M_c2o: np.ndarray, mask_crop: np.ndarray):
        self.image = image
        self.M_c2o = np.asarray(M_c2o, np.float32)
        self.mask = paste_back_mask(mask_crop, self.M_c2o, image.shape[:2])
        ys, xs = np.nonzero(np.maximum.reduce([self.mask[..., c] for c in range(3)]))  # 10x faster than axis=2
        self.box = (int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1) if len(xs) else (0, 0, 0, 0)
        y0, y1, x0, x1 = self.box
        # the request's constant part of the blend, inside the box: the mask and the source under (1 - mask)
        self._mask = self.mask[y0:y1, x0:x1]
        self._source_part = (1 - self._mask) * image[y0:y1, x0:x1]

    def __call__(self, crop: np.ndarray) -> np.ndarray:
        h, w = self.image.shape[:2]
        warped = cv2.warpAffine(crop, self.M_c2o[:2], (w, h), flags=cv2.INTER_LINEAR)
        y0, y1, x0, x1 = self.box
        out = self.image.copy()
        blend = warped[y0:y1, x0:x1].astype(np.float32)  # the official blend, in place (no temporaries)
        blend *= self._mask
        blend += self._source_part
        out[y0:y1, x0:x1] = np.clip(blend, 0, 255, out=blend)  # the assignment truncates like astype(uint8)
        return out

    def onto(self, frame: np.ndarray, crop: np.ndarray) -> np.ndarray:
        """The same blend over ``frame`` (the source with other faces already pasted in) instead of the source, in
        place: inside this face's mask the crop is blended with what ``frame`` holds there."""
        h, w = frame.shape[:2]
        warped = cv2.warpAffine(crop, self.M_c2o[:2], (w, h), flags=cv2.INTER_LINEAR)
        y0, y1, x0, x1 = self.box
        blend = warped[y0:y1, x0:x1].astype(np.float32)
        blend *= self._mask
        blend += (1 - self._mask) * frame[y0:y1, x0:x1]
        frame[y0:y1, x0:x1] = np.clip(blend, 0, 255, out=blend)
        return frame


def paste_faces(pastes: list[PasteBack], crops: list[np.ndarray]) -> np.ndarray:
    """One frame with several animated faces (one crop each, same source image): pasted back in order, each blended
    over the frame so far, so where two masks overlap the later face is blended over the earlier one."""
    frame = pastes[0](crops[0])
    for paste, crop in zip(pastes[1:], crops[1:]):
        paste.onto(frame, crop)
    return frame
