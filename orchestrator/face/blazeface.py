"""BlazeFace (short range) pre/post-processing: letterbox, filtering and weighted NMS, back to image pixels.

The served ``face_detector`` model already decodes the SSD anchors: boxes and keypoints come in letterbox pixels.
Image coordinates here are OpenCV pixel coordinates (pixel centres at integers).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

INPUT_SIZE = 128
MIN_TILE = 160  # image px: smaller tiles would be upscaled for the 128 px detector input
MIN_FACE_FRACTION = 0.1  # the short-range detector misses faces narrower than about 10% of its input's side


@dataclass(frozen=True)
class Letterbox:
    """image edge coordinates -> letterbox edge coordinates: ``x * scale + offset``."""

    scale: float
    offset: np.ndarray  # (2,) x, y

    def to_image(self, points: np.ndarray) -> np.ndarray:
        """Letterbox edge coordinates -> image pixel coordinates."""
        return (np.asarray(points, np.float64) - self.offset) / self.scale - 0.5


@dataclass(frozen=True)
class Detection:
    box: np.ndarray  # (4,) x1, y1, x2, y2 image px
    keypoints: np.ndarray | None  # (6, 2) image px: eye (image left), eye (image right), nose, mouth, ear, ear
    score: float


def letterbox(image: np.ndarray, size: int = INPUT_SIZE) -> tuple[np.ndarray, Letterbox]:
    """Fit the image into a centred ``size`` square keeping its aspect ratio, black borders (uint8 RGB)."""
    h, w = image.shape[:2]
    scale = size / max(h, w)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (new_w, new_h), interpolation=interpolation)
    canvas = np.zeros((size, size, 3), np.uint8)
    x0, y0 = (size - new_w) // 2, (size - new_h) // 2
    canvas[y0:y0 + new_h, x0:x0 + new_w] = resized
    return canvas, Letterbox(scale=new_w / w if w >= h else new_h / h, offset=np.array([x0, y0], np.float64))


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def weighted_nms(boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray,
                 iou_threshold: float) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """MediaPipe's WEIGHTED suppression: each cluster around the best remaining box becomes the score-weighted mean
    of its members' boxes and keypoints, with the best member's score."""
    order = np.argsort(-scores, kind="stable")
    boxes, keypoints, scores = boxes[order], keypoints[order], scores[order]
    remaining = np.ones(len(scores), bool)
    kept = []
    for i in range(len(scores)):
        if not remaining[i]:
            continue
        members = remaining & (iou(boxes[i], boxes) > iou_threshold)
        members[i] = True
        weights = scores[members][:, None]
        box = (boxes[members] * weights).sum(0) / weights.sum()
        kps = (keypoints[members] * weights[:, :, None]).sum(0) / weights.sum()
        kept.append((box, kps, float(scores[i])))
        remaining &= ~members
    return kept


def postprocess(boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray, frame: Letterbox,
                min_score: float = 0.5, iou_threshold: float = 0.3) -> list[Detection]:
    """One image's model outputs ([896,4], [896,6,2], [896]) -> detections in image pixels, best first."""
    keep = scores >= min_score
    detections = []
    for box, kps, score in weighted_nms(boxes[keep], keypoints[keep], scores[keep], iou_threshold):
        corners = frame.to_image(box.reshape(2, 2)).reshape(4)
        detections.append(Detection(corners, frame.to_image(kps), score))
    return detections


@dataclass(frozen=True)
class Tile:
    """A window of the image searched on its own: its top-left corner and extent in image pixels."""

    x0: int
    y0: int
    width: int
    height: int

    def crop(self, image: np.ndarray) -> np.ndarray:
        return image[self.y0:self.y0 + self.height, self.x0:self.x0 + self.width]


def _starts(length: int, side: int) -> list[int]:
    """Window starts along one axis: half-overlapping windows of ``side`` that cover ``length`` exactly."""
    if length <= side:
        return [0]
    count = int(np.ceil((length - side) / (side / 2))) + 1
    return [int(round(v)) for v in np.linspace(0, length - side, count)]


def tiles(height: int, width: int, level: int, min_side: int = MIN_TILE) -> list[Tile]:
    """Square windows of side longest-side / 2**level overlapping by half, so that any face up to half a window
    across lies wholly inside one of them; [] when the windows would be smaller than ``min_side``."""
    side = int(np.ceil(max(height, width) / 2 ** level))
    if level < 1 or side < min_side:
        return []
    return [Tile(x0, y0, min(side, width), min(side, height))
            for y0 in _starts(height, side) for x0 in _starts(width, side)]


def smallest_face(height: int, width: int, level: int) -> float:
    """About the narrowest face (px) the windows of ``level`` find in an image; 0 when that level has no windows."""
    windows = tiles(height, width, level)
    return MIN_FACE_FRACTION * max(max(t.width, t.height) for t in windows) if windows else 0.0


def blank_out(image: np.ndarray, boxes, margin: float = 0.25) -> np.ndarray:
    """A copy of the image with each box (grown by ``margin`` of its size on every side) filled with the image's mean
    colour: a window that cuts a face already found does not take a part of it (a chin, an eye) for another face."""
    out = image.copy()
    h, w = image.shape[:2]
    fill = image.reshape(-1, image.shape[2]).mean(axis=0).astype(image.dtype)
    for x1, y1, x2, y2 in boxes:
        dx, dy = margin * (x2 - x1), margin * (y2 - y1)
        top, bottom = max(0, int(y1 - dy)), min(h, int(np.ceil(y2 + dy)))
        left, right = max(0, int(x1 - dx)), min(w, int(np.ceil(x2 + dx)))
        out[top:bottom, left:right] = fill
    return out


def inside_any(detection: Detection, faces) -> bool:
    """Whether the detection's centre lies in the box of one of ``faces`` (objects with a ``box``): the same face
    again, or a part of it, found by a window search."""
    cx, cy = (detection.box[0] + detection.box[2]) / 2, (detection.box[1] + detection.box[3]) / 2
    return any(f.box[0] <= cx <= f.box[2] and f.box[1] <= cy <= f.box[3] for f in faces)


def in_tile_interior(detection: Detection, tile: Tile, image_shape: tuple[int, ...], margin: float = 0.01) -> bool:
    """False when the box touches a window edge that is not an image edge (a face cut by the window: the
    half-overlapping neighbour holds it whole)."""
    h, w = image_shape[:2]
    m = margin * max(tile.width, tile.height)
    x1, y1, x2, y2 = detection.box
    cut_left = tile.x0 > 0 and x1 < tile.x0 + m
    cut_top = tile.y0 > 0 and y1 < tile.y0 + m
    cut_right = tile.x0 + tile.width < w and x2 > tile.x0 + tile.width - 1 - m
    cut_bottom = tile.y0 + tile.height < h and y2 > tile.y0 + tile.height - 1 - m
    return not (cut_left or cut_top or cut_right or cut_bottom)


def shift(detection: Detection, tile: Tile) -> Detection:
    """A detection in tile pixels -> image pixels."""
    offset = np.array([tile.x0, tile.y0], np.float64)
    keypoints = None if detection.keypoints is None else detection.keypoints + offset
    return Detection(detection.box + np.tile(offset, 2), keypoints, detection.score)


def suppress(detections: list[Detection], iou_threshold: float) -> list[Detection]:
    """Plain NMS across windows: the best-scoring box of each overlapping group, best first."""
    kept: list[Detection] = []
    for d in sorted(detections, key=lambda d: -d.score):
        if not kept or iou(d.box, np.stack([k.box for k in kept])).max() <= iou_threshold:
            kept.append(d)
    return kept
