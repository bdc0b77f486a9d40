"""FaceMesh pre/post-processing: the rotated square region of interest, its 192x192 crop, and landmark projection.

The ROI follows MediaPipe: from a detection, centred on the box, rotated so the eye keypoints (0 -> 1) are
horizontal, side = 1.5 x the long side of the box; from previous landmarks (tracking), the same with the bounding box
of the landmarks and the eye-corner axis 33 -> 263.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .blazeface import Detection
from .mesh_layout import LEFT_EYE_OUTER_IMAGE_LEFT, RIGHT_EYE_OUTER_IMAGE_RIGHT

INPUT_SIZE = 192
ROI_SCALE = 1.5


@dataclass(frozen=True)
class Roi:
    center: np.ndarray  # (2,) image px
    size: float  # side of the square, image px
    angle: float  # radians, rotation of the ROI x axis in image coordinates (y down)

    def crop_to_image(self, size: int = INPUT_SIZE) -> np.ndarray:
        """2x3 affine: crop edge coordinates (0..size) -> image pixel coordinates."""
        s = self.size / size
        c, si = math.cos(self.angle), math.sin(self.angle)
        linear = np.array([[s * c, -s * si], [s * si, s * c]])
        t = np.asarray(self.center, np.float64) - linear @ np.array([size / 2, size / 2])
        return np.hstack([linear, t[:, None]])


def _roi(box: np.ndarray, start: np.ndarray, end: np.ndarray, scale: float) -> Roi:
    angle = math.atan2(float(end[1] - start[1]), float(end[0] - start[0]))
    center = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2], np.float64)
    side = max(box[2] - box[0], box[3] - box[1]) * scale
    return Roi(center, float(side), angle)


def roi_from_detection(detection: Detection, scale: float = ROI_SCALE) -> Roi:
    return _roi(detection.box, detection.keypoints[0], detection.keypoints[1], scale)


def roi_from_landmarks(landmarks: np.ndarray, scale: float = ROI_SCALE) -> Roi:
    pts = np.asarray(landmarks)[:, :2]
    box = np.concatenate([pts.min(0), pts.max(0)])
    return _roi(box, pts[LEFT_EYE_OUTER_IMAGE_LEFT], pts[RIGHT_EYE_OUTER_IMAGE_RIGHT], scale)


def roi_from_box(box: np.ndarray, scale: float = 1.0) -> Roi:
    """An upright ROI around a user-supplied face box (a hint where the detector found nothing)."""
    box = np.asarray(box, np.float64)
    return _roi(box, np.zeros(2), np.array([1.0, 0.0]), scale)


def crop_roi(image: np.ndarray, roi: Roi, size: int = INPUT_SIZE) -> np.ndarray:
    """The model input: the rotated ROI resampled to ``size`` x ``size`` (bilinear, replicated border)."""
    a = roi.crop_to_image(size)
    # crop pixel index j has edge coordinate j + 0.5; image edge coordinate x has pixel index x - 0.5
    index_map = a.copy()
    index_map[:, 2] += a[:, :2] @ np.array([0.5, 0.5]) - 0.5
    return cv2.warpAffine(image, index_map, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE)


def project(landmarks: np.ndarray, roi: Roi, size: int = INPUT_SIZE) -> np.ndarray:
    """Landmarks in crop pixels ([468, 3]) -> image pixels [468, 3]: x, y, and the depth z scaled like them."""
    a = roi.crop_to_image(size)
    points = np.asarray(landmarks, np.float64)
    xy = points[:, :2] @ a[:, :2].T + a[:, 2] - 0.5
    return np.concatenate([xy, points[:, 2:3] * np.sqrt(abs(np.linalg.det(a[:, :2])))], axis=1)
