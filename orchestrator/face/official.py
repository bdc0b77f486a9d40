"""The official face stack (``face_stack: official``): SCRFD detector, 106-point and 203-point landmark models.

Same interface as ``FaceAnalyzer``; ``Face.landmarks`` are the 203 LivePortrait points, the crop comes from the
106 points (as the official ``Cropper.crop_source_image`` does), the ratios use the official 203-point definitions.
Pre/post-processing follows InsightFace's SCRFD and Landmark classes and LivePortrait's LandmarkRunner.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from .analyzer import AnalyzerConfig, FaceAnalyzer
from .blazeface import Detection, suppress
from .geometry import CropConfig, crop_transform, transform_points, warp_crop
from .ordering import order_faces, overlaps_any
from .ratios import official_ratios
from .runner import infer_chunked

DETECTOR = "official_face_detector"
LANDMARKS_106 = "official_landmarks_106"
LANDMARKS_203 = "official_landmarks_203"
DET_SIZE = 512
STRIDES = (8, 16, 32)
L106_SIZE = 192
L203_SIZE = 224
L203_CROP = CropConfig(dsize=L203_SIZE, scale=1.5, vy_ratio=-0.1)


@dataclass(frozen=True)
class OfficialConfig(AnalyzerConfig):
    min_detection_score: float = 0.15  # the official CLI default (det_thresh)
    nms_iou: float = 0.4
    crop: CropConfig = field(default_factory=CropConfig)


def scrfd_letterbox(image: np.ndarray, size: int = DET_SIZE) -> tuple[np.ndarray, float]:
    """Resize into the top-left corner of a black ``size`` square, keeping the aspect ratio (SCRFD ``detect``)."""
    h, w = image.shape[:2]
    new_h, new_w = (size, int(size * w / h)) if h > w else (int(size * h / w), size)
    canvas = np.zeros((size, size, 3), np.uint8)
    canvas[:new_h, :new_w] = cv2.resize(image, (new_w, new_h))
    return canvas, new_h / h


def scrfd_decode(outputs: dict[str, np.ndarray], index: int, threshold: float) -> tuple[np.ndarray, ...]:
    """Anchor decoding of one image: boxes [K,4], keypoints [K,5,2], scores [K] above ``threshold``."""
    boxes, kps, scores = [], [], []
    for s in STRIDES:
        cells = DET_SIZE // s
        ys, xs = np.mgrid[:cells, :cells]
        centres = np.repeat(np.stack([xs, ys], -1).reshape(-1, 1, 2) * s, 2, axis=1).reshape(-1, 2)
        score = outputs[f"scores_{s}"][index, :, 0]
        keep = score >= threshold
        d = outputs[f"bbox_{s}"][index][keep] * s
        c = centres[keep]
        boxes.append(np.concatenate([c - d[:, :2], c + d[:, 2:]], axis=1))
        kps.append(c[:, None, :] + outputs[f"kps_{s}"][index][keep].reshape(-1, 5, 2) * s)
        scores.append(score[keep])
    return np.concatenate(boxes), np.concatenate(kps), np.concatenate(scores)


def box_crop_matrix(box: np.ndarray, size: int = L106_SIZE) -> np.ndarray:
    """InsightFace Landmark crop: centred on the box, 1.5 x its long side, no rotation (2x3, image -> crop)."""
    scale = size / (max(box[2] - box[0], box[3] - box[1]) * 1.5)
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return np.array([[scale, 0, size / 2 - cx * scale], [0, scale, size / 2 - cy * scale]])


class OfficialFaceAnalyzer(FaceAnalyzer):
    def __init__(self, runner, config: OfficialConfig = OfficialConfig()):
        super().__init__(runner, config)

    async def detect(self, image: np.ndarray, order: str | None = None, hint: np.ndarray | None = None, *,
                     small_face_levels: int | None = None, every_face: bool = True) -> list:
        """As ``FaceAnalyzer.detect``; the 512 px SCRFD input finds small faces without a window search."""
        detections = await self._detect(image)
        if hint is not None and not overlaps_any([d.box for d in detections], hint):
            detections = [Detection(np.asarray(hint, np.float64), None, 0.0)]
        if not detections:
            return []
        lmk106 = await self._landmarks106(image, [d.box for d in detections])
        lmk203 = await self.landmarks203(image, lmk106)
        faces = []
        for det, l106, l203 in zip(detections, lmk106, lmk203):
            eyes, lip = self.ratios(l203)
            faces.append(self._make_face(det, l106, l203, eyes, lip))
        return order_faces(faces, order or self.config.order)

    def _make_face(self, det: Detection, l106: np.ndarray, l203: np.ndarray, eyes, lip):
        from .analyzer import Face

        return Face(det.box, det.score, l203, eyes, lip, crop_transform(l106, self.config.crop), 1.0, det.keypoints)

    async def _detect(self, image: np.ndarray) -> list[Detection]:
        boxed, det_scale = scrfd_letterbox(image)
        out = await self.runner.infer(DETECTOR, {"image": boxed[None]})
        boxes, kps, scores = scrfd_decode(out, 0, self.config.min_detection_score)
        found = [Detection(box / det_scale, k / det_scale, float(s)) for box, k, s in zip(boxes, kps, scores)]
        return suppress(found, self.config.nms_iou)

    async def _landmarks106(self, image: np.ndarray, boxes: list[np.ndarray]) -> list[np.ndarray]:
        matrices = [box_crop_matrix(b) for b in boxes]
        crops = np.stack([cv2.warpAffine(image, m, (L106_SIZE, L106_SIZE), borderValue=0) for m in matrices])
        out = await infer_chunked(self.runner, LANDMARKS_106, "image", crops, self.config.max_batch)
        points = (out["landmarks"].reshape(len(boxes), -1, 2)[:, -106:] + 1) * (L106_SIZE // 2)
        return [transform_points(p, cv2.invertAffineTransform(m)) for p, m in zip(points, matrices)]

    async def landmarks203(self, image: np.ndarray, guides: list[np.ndarray]) -> list[np.ndarray]:
        """LivePortrait's landmark runner: crop around guide landmarks (106 or 203) -> 203 points in the image."""
        transforms = [crop_transform(g, L203_CROP) for g in guides]
        crops = np.stack([warp_crop(image, t) for t in transforms])
        out = await infer_chunked(self.runner, LANDMARKS_203, "image", crops, self.config.max_batch)
        points = out["landmarks"].reshape(len(guides), 203, 2) * L203_SIZE
        return [transform_points(p, t.M_c2o) for p, t in zip(points, transforms)]

    def ratios(self, landmarks: np.ndarray) -> tuple[tuple[float, float], float]:
        eyes, lip = official_ratios(landmarks)
        return (float(eyes[0]), float(eyes[1])), lip

    def crop_points(self, landmarks: np.ndarray) -> np.ndarray:
        return landmarks  # 203 points: a layout the official geometry knows

    async def track(self, image: np.ndarray, previous: np.ndarray) -> np.ndarray | None:
        """Official tracking: the 203-point model seeded with the previous frame's points (no loss check)."""
        return (await self.landmarks203(image, [previous]))[0]
