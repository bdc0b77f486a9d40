"""Streaming driving-video cropping: detect once, track with the landmark model, re-detect when lost, smooth causally.

The official pipeline averages one crop box over the whole clip (offline). Here every frame gets a crop as soon as it
arrives: the square box of the official driving crop (scale 2.2, vy -0.1, no rotation) from the frame's landmarks,
smoothed with an exponential moving average (a large jump, e.g. after re-detection elsewhere, resets the average).
Frames before the first face have no crop; frames where the face is lost keep the last box.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from .analyzer import FaceAnalyzer
from .geometry import (DRIVING_CROP, CropConfig, CropTransform, box_transform, crop_rect, crop_transform, resize_crop,
                       square_box, warp_crop)
from .ordering import FaceSelectionError, box_iou, select_face


@dataclass(frozen=True)
class TrackerConfig:
    crop: bool | None = None  # None: crop only when the video is not square (official behaviour); True/False force it
    box: CropConfig = field(default_factory=lambda: DRIVING_CROP)
    smoothing: float = 0.35  # weight of the newest box in the moving average (1 = no smoothing)
    reset_iou: float = 0.3  # a new box overlapping the smoothed one less than this replaces it
    output_size: int = 256
    small_face_levels: int = 1  # window search on re-detection (AnalyzerConfig); costs time on faceless frames


@dataclass(frozen=True)
class DrivingFrame:
    image_256: np.ndarray | None  # the network input; None before the first face (when cropping)
    face_found: bool  # landmarks were measured on this frame
    landmarks: np.ndarray | None  # image px: (468, 2) FaceMesh, (203, 2) official stack
    eye_ratio: tuple[float, float] | None
    lip_ratio: float | None
    box: np.ndarray | None  # the smoothed square crop box [x1, y1, x2, y2] (None when not cropping)
    redetected: bool = False  # the detector ran on this frame


def should_crop(frame_shape: tuple[int, ...], requested: bool | None) -> bool:
    """Cropping is forced on for non-square videos, like the official CLI; otherwise it is the user's choice."""
    h, w = frame_shape[:2]
    return True if h != w else bool(requested)


class DrivingCropTracker:
    def __init__(self, analyzer: FaceAnalyzer, config: TrackerConfig = TrackerConfig(),
                 frame_shape: tuple[int, ...] | None = None):
        """``frame_shape`` (when known) decides cropping now; otherwise the first frame decides it."""
        self.analyzer = analyzer
        self.config = config
        self.cropping = None if frame_shape is None else should_crop(frame_shape, config.crop)
        self._landmarks: np.ndarray | None = None
        self._box: np.ndarray | None = None

    async def process(self, frame: np.ndarray) -> DrivingFrame:
        """Next RGB uint8 frame -> its 256x256 driving input, landmarks and ratios."""
        if self.cropping is None:
            self.cropping = should_crop(frame.shape, self.config.crop)
        landmarks, redetected = await self._find(frame)
        self._landmarks = landmarks
        eyes = lip = None
        if landmarks is not None:
            eyes, lip = self.analyzer.ratios(landmarks)
        if not self.cropping:
            return DrivingFrame(self.driving_input(frame), landmarks is not None, landmarks, eyes, lip, None,
                                redetected)
        if landmarks is not None:
            self._box = self._smooth(square_box(crop_rect(self.analyzer.crop_points(landmarks), self.config.box.scale,
                                                          vy_ratio=self.config.box.vy_ratio)))
        if self._box is None:
            return DrivingFrame(None, False, None, None, None, None, redetected)
        return DrivingFrame(self.driving_input(frame, self._box), landmarks is not None, landmarks, eyes, lip,
                            self._box.copy(), redetected)

    def driving_input(self, frame: np.ndarray, box: np.ndarray | None = None) -> np.ndarray:
        """The network input of a frame: the official driving crop of ``box`` (or the whole frame), resized to 256
        with ``cv2.resize``'s default bilinear filter, as the official pipeline resizes driving frames."""
        if box is not None:
            frame = warp_crop(frame, box_transform(box, self.config.box.dsize))
        return cv2.resize(frame, (self.config.output_size,) * 2)

    async def _find(self, frame: np.ndarray) -> tuple[np.ndarray | None, bool]:
        if self._landmarks is not None:
            landmarks = await self.analyzer.track(frame, self._landmarks)
            if landmarks is not None:
                return landmarks, False
        faces = await self.analyzer.detect(frame, small_face_levels=self.config.small_face_levels, every_face=False)
        if not faces:
            return None, True
        if self._box is not None:  # re-detection: keep following the face nearest the current crop
            faces = sorted(faces, key=lambda f: -box_iou(f.box, self._box))
        return faces[0].landmarks, True

    def _smooth(self, box: np.ndarray) -> np.ndarray:
        if self._box is None or box_iou(box, self._box) < self.config.reset_iou:
            return box
        a = self.config.smoothing
        return a * box + (1 - a) * self._box


@dataclass(frozen=True)
class SourceFrame:
    """One source-video frame prepared like a source image (official ``crop_source_video``)."""

    image_256: np.ndarray  # the network input (the official source crop, resized)
    transform: CropTransform  # frame <-> 512 crop (``M_c2o`` for the paste-back)
    eye_ratio: tuple[float, float]
    lip_ratio: float
    box: np.ndarray  # the landmarks' bounding box [x1, y1, x2, y2]
    face_found: bool  # False: the face was lost on this frame and the last crop is reused


class SourceFaceTracker:
    """The chosen face of a source video, frame after frame: detected (with the request's face index, order and
    hint) on the first frame that shows a face, then followed by its landmarks (the landmark model seeded with the
    previous frame's, as the official ``crop_source_video`` does), re-detected when lost (the face overlapping the
    last one most). Every frame is cropped from its own landmarks like a source image (rotation, ``crop`` scale and
    offsets); a frame where the face is lost reuses the last crop."""

    def __init__(self, analyzer: FaceAnalyzer, face_index: int = 0, order: str | None = None,
                 hint: np.ndarray | None = None, small_face_levels: int = 1, every_face: bool = True):
        self.analyzer = analyzer
        self.every_face = every_face  # the first frame's choice needs small faces beside large ones (``detect``)
        self.small_face_levels = small_face_levels  # window search when no face is seen (costs time per frame)
        self.face_index, self.order, self.hint = face_index, order, hint
        self._landmarks: np.ndarray | None = None
        self._last: SourceFrame | None = None
        self.first_face = None  # the chosen face where it was first found (its detector box: the summary's)
        self.first_index = 0  # its index in ``order`` among that frame's faces

    async def process(self, frame: np.ndarray) -> SourceFrame | None:
        """The frame's crop, or None while no face has been seen yet."""
        landmarks = None
        if self._landmarks is not None:
            landmarks = await self.analyzer.track(frame, self._landmarks)
        if landmarks is None:
            first = self._last is None
            faces = await self.analyzer.detect(frame, self.order, self.hint if first else None,
                                               small_face_levels=self.small_face_levels,
                                               every_face=first and self.every_face)
            try:
                if faces:  # the chosen face, then the face where it was lost (another person's does not count)
                    face = select_face(faces, self.face_index, self.hint if first else self._last.box)
                    landmarks = face.landmarks
                    if first:
                        self.first_face, self.first_index = face, next(i for i, f in enumerate(faces) if f is face)
            except FaceSelectionError:
                if first:
                    raise
        if landmarks is None:
            if self._last is None:
                return None
            self._landmarks = None
            last = self._last
            return SourceFrame(self.crop_like(frame, last), last.transform, last.eye_ratio, last.lip_ratio, last.box,
                               False)
        self._landmarks = landmarks
        transform = crop_transform(self.analyzer.crop_points(landmarks), self.analyzer.config.crop)
        eyes, lip = self.analyzer.ratios(landmarks)
        box = np.concatenate([landmarks[:, :2].min(axis=0), landmarks[:, :2].max(axis=0)]).astype(np.float64)
        self._last = SourceFrame(resize_crop(warp_crop(frame, transform)), transform, eyes, lip, box, True)
        return self._last

    @staticmethod
    def crop_like(frame: np.ndarray, found: SourceFrame) -> np.ndarray:
        """The network input of ``frame`` cut with another frame's crop (frames before the first face)."""
        return resize_crop(warp_crop(frame, found.transform))
