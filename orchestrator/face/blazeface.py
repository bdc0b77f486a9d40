"""BlazeFace (short range) pre/post-processing: letterbox, filtering and weighted NMS, back to image pixels.

The served ``face_detector`` model already decodes the SSD anchors: boxes and keypoints come in letterbox pixels.
Image coordinates here are OpenCV pixel coordinates (pixel centres at integers).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

INPUT_SIZE = 128


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
