"""Paste-back in YUV 4:2:0 (I420), for videos: the rendered crops come as I420 (``render_i420``) and the encoder
takes I420, so a video frame never goes through RGB.

The source is converted to I420 once (per request for a source image, per frame for a source video). Each crop is
warped into the mask's box plane by plane, with the blend of ``paste.PasteBack`` (``mask * crop + (1 - mask) *
source``): Y at full resolution with the warped mask, U and V at half resolution with the mask averaged over each
2x2 block (what the RGB -> I420 conversion does to the blended chroma). A chroma sample sits at the centre of its
2x2 luma block (OpenCV's and the render's I420: chroma is the mean of each block), so the chroma warp is the luma
warp seen through ``luma = 2 * chroma + 0.5``; the box is widened to even coordinates so that it covers whole
chroma samples. The blend rounds where the RGB path truncates, and chroma is interpolated at half resolution: the
difference from the RGB paste-back is measured in ``tests/test_yuv_paste.py``.

Frames are written into buffers reused from chunk to chunk (``I420Canvas``): only the boxes change, the rest of
each buffer keeps the source; the encoder copies a frame when it is handed one (``av.VideoFrame.from_ndarray``).
"""
from __future__ import annotations

import cv2
import numpy as np

from .paste import EMPTY, Box, box_matrix, mask_in_box, warp_into

CROP = 512  # the render's crop side
# chroma sample -> luma position (the centre of its 2x2 block), and back
TO_LUMA = np.array([[2, 0, 0.5], [0, 2, 0.5], [0, 0, 1]], np.float64)
FROM_LUMA = np.linalg.inv(TO_LUMA)


def to_i420(rgb: np.ndarray) -> np.ndarray:
    """RGB uint8 (even sides) -> I420 [h * 3 / 2, w] uint8 (BT.601 limited range, as the encoder's input)."""
    h, w = rgb.shape[:2]
    if h % 2 or w % 2:
        raise ValueError(f"I420 needs even sides, got {w}x{h}")
    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2YUV_I420)


def to_rgb(i420: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(i420, cv2.COLOR_YUV2RGB_I420)


def planes(frame: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Y, U, V of a contiguous I420 frame, as views (Y: height x width, U and V: half of each side)."""
    flat = frame.reshape(-1)
    luma, quarter = height * width, height * width // 4
    return (flat[:luma].reshape(height, width), flat[luma:luma + quarter].reshape(height // 2, width // 2),
            flat[luma + quarter:luma + 2 * quarter].reshape(height // 2, width // 2))


def _even(box: Box) -> Box:
    y0, y1, x0, x1 = box
    return y0 - y0 % 2, y1 + y1 % 2, x0 - x0 % 2, x1 + x1 % 2


def _half(box: Box) -> Box:
    y0, y1, x0, x1 = box
    return y0 // 2, y1 // 2, x0 // 2, x1 // 2


def _view(plane: np.ndarray, box: Box) -> np.ndarray:
    y0, y1, x0, x1 = box
    return plane[y0:y1, x0:x1]


class I420PasteBack:
    """Blends I420 crops into one I420 source with one crop transform, inside the mask's box (even coordinates)."""

    def __init__(self, source: np.ndarray, M_c2o: np.ndarray, mask_crop: np.ndarray, height: int, width: int):
        if height % 2 or width % 2:
            raise ValueError(f"I420 needs even sides, got {width}x{height}")
        self.source, self.height, self.width = source, height, width
        mask_crop = mask_crop[..., 0] if mask_crop.ndim == 3 else mask_crop  # LivePortrait's masks are grey
        tight, mask = mask_in_box(mask_crop, M_c2o, (height, width))
        self.box = EMPTY if tight == EMPTY else _even(tight)
        y0, y1, x0, x1 = self.box
        ty0, ty1, tx0, tx1 = tight
        luma = np.zeros((y1 - y0, x1 - x0), np.float32)  # the tight mask, zero on the rows/columns added for evenness
        luma[ty0 - y0:ty1 - y0, tx0 - x0:tx1 - x0] = mask / np.float32(255)
        chroma = cv2.resize(luma, ((x1 - x0) // 2, (y1 - y0) // 2), interpolation=cv2.INTER_AREA) if luma.size \
            else luma
        self.masks = (luma, chroma, chroma)
        self.inverse = tuple(1 - m for m in self.masks)
        m = np.asarray(M_c2o, np.float64)
        self.matrices = (box_matrix(m, self.box), box_matrix(FROM_LUMA @ m @ TO_LUMA, self.box, 0.5),
                         box_matrix(FROM_LUMA @ m @ TO_LUMA, self.box, 0.5))
        self.boxes = (self.box, _half(self.box), _half(self.box))
        self._source_planes = planes(source, height, width)

    def blend(self, frame: np.ndarray, crop: np.ndarray, over: np.ndarray | None = None) -> np.ndarray:
        """``crop`` (I420 [768, 512]) blended into ``frame``'s box, in place, over ``over``'s box (default: the
        source; ``frame`` itself to blend over faces already pasted in)."""
        if self.box == EMPTY:
            return frame
        crop_planes = planes(crop, CROP, CROP)
        under = self._source_planes if over is None else planes(over, self.height, self.width)
        for out, below, part, matrix, box, mask, inverse in zip(
                planes(frame, self.height, self.width), under, crop_planes, self.matrices, self.boxes, self.masks,
                self.inverse):
            warped = warp_into(part, matrix, box)
            cv2.blendLinear(warped, _view(below, box), mask, inverse, dst=_view(out, box))
        return frame

    def restore(self, frame: np.ndarray) -> None:
        """The source back into this face's box of ``frame``."""
        for out, source, box in zip(planes(frame, self.height, self.width), self._source_planes, self.boxes):
            _view(out, box)[...] = _view(source, box)


class I420Canvas:
    """The video frames of one source image with its faces pasted back, in I420. The frames of a call are buffers
    reused by the next call (their number is the chunk's): a caller is done with a chunk's frames (the encoder has
    copied them) before it asks for the next chunk."""

    def __init__(self, image: np.ndarray, transforms: list[np.ndarray], mask_crop: np.ndarray):
        self.height, self.width = image.shape[:2]
        self.source = to_i420(image)
        self.pastes = [I420PasteBack(self.source, M, mask_crop, self.height, self.width) for M in transforms]
        self._buffers: list[np.ndarray] = []

    def __call__(self, faces: list[np.ndarray]) -> list[np.ndarray]:
        """``faces``: each face's rendered crops of the chunk ([n, 768, 512] I420), in paste order -> n frames;
        where two masks overlap the later face is blended over the earlier one."""
        n = len(faces[0])
        while len(self._buffers) < n:
            self._buffers.append(self.source.copy())
        frames = self._buffers[:n]
        first, rest = self.pastes[0], list(zip(self.pastes[1:], faces[1:]))
        for i, frame in enumerate(frames):
            for paste, _ in rest:
                paste.restore(frame)
            first.blend(frame, faces[0][i])
            for paste, crops in rest:
                paste.blend(frame, crops[i], over=frame)
        return frames


def paste_video_frame(image: np.ndarray, M_c2o: np.ndarray, mask_crop: np.ndarray, crop: np.ndarray) -> np.ndarray:
    """One frame of a source video (RGB, its own crop transform) with its rendered crop (I420) pasted back: a new
    I420 frame (the frame's own conversion is blended in place)."""
    frame = to_i420(image)
    h, w = image.shape[:2]
    return I420PasteBack(frame, M_c2o, mask_crop, h, w).blend(frame, crop, over=frame)
