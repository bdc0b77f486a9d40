"""Find every face of an image and describe it: box, score, 468 landmarks, eye/lip ratios and the LivePortrait crop.

Pipeline (default MediaPipe stack): letterbox -> ``face_detector`` -> weighted NMS -> rotated ROI per face ->
``face_landmarks`` (all faces in one batch) -> landmarks in image pixels -> ratios and crop transform -> ordering.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import blazeface, facemesh
from .geometry import CropConfig, CropTransform, crop_transform, resize_crop, warp_crop
from .mesh_layout import mesh_to_68
from .ordering import order_faces, overlaps_any, select_face
from .ratios import RatioMapping, eye_openness, liveportrait_ratios
from .runner import FaceModelRunner, infer_chunked

DETECTOR = "face_detector"
LANDMARKS = "face_landmarks"


class NoFaceError(LookupError):
    """No usable face; the message suggests what to do (maps to FAILED_PRECONDITION)."""


NO_FACE_HINT = ("set the option `crop_source: false` (CLI: `--no-crop-source`) to use the whole image as the face "
                "crop, or pass a face box hint [x1, y1, x2, y2] around the face (`face_hint`, CLI: `--face-hint`)")


@dataclass(frozen=True)
class AnalyzerConfig:
    min_detection_score: float = 0.5
    nms_iou: float = 0.3
    min_face_score: float = 0.5  # FaceMesh presence
    # Search windows of 1/2, 1/4 ... of the longest side for small faces (see ``small_faces``): the short-range
    # detector needs a face >= ~10% of its input, each level halves that. A level runs when no face is found yet, or
    # when the smallest face found is more than ``much_larger`` times the smallest face the level can find.
    small_face_levels: int = 2
    much_larger: float = 2.0
    order: str = "large-small"
    max_batch: int = 8  # the served models' max_batch_size
    crop: CropConfig = field(default_factory=CropConfig)
    ratios: RatioMapping = field(default_factory=RatioMapping)


@dataclass(frozen=True)
class Face:
    box: np.ndarray  # (4,) x1, y1, x2, y2 image px
    score: float  # detection score
    landmarks: np.ndarray  # (468, 2) image px
    eye_ratio: tuple[float, float]  # LivePortrait scale: (eye on the image left, eye on the image right)
    lip_ratio: float
    crop: CropTransform  # the official source crop (512) computed from the landmarks
    face_score: float = 1.0  # landmark-model presence
    keypoints: np.ndarray | None = None  # (6, 2) detector keypoints (eyes, nose, mouth, ears); None from a hint
    eye_open: tuple[float, float] | None = None  # Ditto's eye openness (``ratios.eye_openness``); FaceMesh only

    def to_json(self) -> dict:
        return {"box": [round(float(v), 2) for v in self.box], "score": round(self.score, 4),
                "landmarks": [[round(float(x), 2), round(float(y), 2)] for x, y in self.landmarks],
                "eye_ratio": [round(float(v), 4) for v in self.eye_ratio], "lip_ratio": round(self.lip_ratio, 4)}


@dataclass(frozen=True)
class SourceCrop:
    """What the animation needs from a source image."""

    image_256: np.ndarray  # 256x256x3 uint8 RGB network input
    image_512: np.ndarray  # 512x512x3 uint8 RGB crop
    M_o2c: np.ndarray  # 3x3 float32, image -> 512 crop
    M_c2o: np.ndarray  # 3x3 float32, 512 crop -> image (paste-back)
    eye_ratio: tuple[float, float]
    lip_ratio: float
    face: Face


def faces_to_json(faces: list[Face]) -> dict:
    """The ``liveportrait detect --json`` document."""
    return {"faces": [f.to_json() for f in faces]}


class FaceAnalyzer:
    def __init__(self, runner: FaceModelRunner, config: AnalyzerConfig = AnalyzerConfig()):
        self.runner = runner
        self.config = config

    async def detect(self, image: np.ndarray, order: str | None = None, hint: np.ndarray | None = None, *,
                     small_face_levels: int | None = None, every_face: bool = True) -> list[Face]:
        """Every face in an RGB uint8 image, ordered (default ``large-small``); [] when there is none.

        Windows of 1/2, then 1/4 ... of the image are searched for small faces, up to ``small_face_levels`` (default
        from the config): a level runs when no face is found yet, or (``every_face``) when the faces found are much
        larger than the smallest face it can find, so a small face beside a large one is found too; with
        ``every_face`` off (a tracker following one face) only while nothing is found. With a box ``hint`` and no
        face overlapping it, the landmark model is run on the hint box itself, so a face the detector misses
        (stylised, tiny) can still be used.
        """
        faces = await self._faces(image, (await self.detections([image]))[0])
        levels = self.config.small_face_levels if small_face_levels is None else small_face_levels
        for level in range(1, levels + 1):
            if faces and not (every_face and self._room_for_smaller(faces, image.shape, level)):
                continue
            searched = blazeface.blank_out(image, [f.box for f in faces]) if faces else image
            found = [d for d in await self.small_faces(searched, level) if not blazeface.inside_any(d, faces)]
            faces = faces + await self._faces(image, found)
        if hint is not None and not overlaps_any([f.box for f in faces], hint):
            hint = np.asarray(hint, np.float64)
            faces = await self._faces(image, [blazeface.Detection(hint, None, 0.0)], [facemesh.roi_from_box(hint, 1.2)])
        return order_faces(faces, order or self.config.order)

    def _room_for_smaller(self, faces: list[Face], shape: tuple[int, ...], level: int) -> bool:
        """Whether the smallest face found is much larger than the smallest face the windows of ``level`` find."""
        smallest_findable = blazeface.smallest_face(*shape[:2], level)
        smallest_found = min(min(f.box[2] - f.box[0], f.box[3] - f.box[1]) for f in faces)
        return smallest_findable > 0 and smallest_found > self.config.much_larger * smallest_findable

    async def _faces(self, image: np.ndarray, found: list[blazeface.Detection],
                     rois: list[facemesh.Roi] | None = None) -> list[Face]:
        """Landmarks for each detection (ROI from its keypoints unless given); those the mesh accepts as faces."""
        rois = rois or [facemesh.roi_from_detection(d) for d in found]
        meshes = await self.landmarks(image, rois)
        return [self._face(d, lm, fs) for d, (lm, fs) in zip(found, meshes) if fs >= self.config.min_face_score]

    async def detections(self, images: list[np.ndarray]) -> list[list[blazeface.Detection]]:
        """Detector stage for a batch of images (each letterboxed to 128x128)."""
        boxed = [blazeface.letterbox(im) for im in images]
        out = await infer_chunked(self.runner, DETECTOR, "image", np.stack([b[0] for b in boxed]),
                                  self.config.max_batch)
        c = self.config
        return [blazeface.postprocess(out["boxes"][i], out["keypoints"][i], out["scores"][i], boxed[i][1],
                                      c.min_detection_score, c.nms_iou) for i in range(len(images))]

    async def small_faces(self, image: np.ndarray, level: int) -> list[blazeface.Detection]:
        """Detector stage on half-overlapping windows of 1/2**level of the longest side, all windows in one batch;
        faces cut by a window edge are left to the neighbour that holds them whole; overlaps suppressed."""
        windows = blazeface.tiles(*image.shape[:2], level)
        if not windows:
            return []
        per_window = await self.detections([t.crop(image) for t in windows])
        found = [(blazeface.shift(d, t), t) for t, ds in zip(windows, per_window) for d in ds]
        whole = [d for d, t in found if blazeface.in_tile_interior(d, t, image.shape)]
        return blazeface.suppress(whole, self.config.nms_iou)

    async def landmarks(self, image: np.ndarray, rois: list[facemesh.Roi]) -> list[tuple[np.ndarray, float]]:
        """Landmark stage: (468x3 image px: x, y, depth; presence) per ROI, all ROIs in one batch."""
        if not rois:
            return []
        crops = np.stack([facemesh.crop_roi(image, roi) for roi in rois])
        out = await infer_chunked(self.runner, LANDMARKS, "image", crops, self.config.max_batch)
        return [(facemesh.project(out["landmarks"][i], roi), float(out["face_score"][i, 0]))
                for i, roi in enumerate(rois)]

    def ratios(self, landmarks: np.ndarray) -> tuple[tuple[float, float], float]:
        """(eye ratios, lip ratio) on LivePortrait's scale from this stack's landmarks."""
        eyes, lip = liveportrait_ratios(landmarks, self.config.ratios)
        return (float(eyes[0]), float(eyes[1])), lip

    def crop_points(self, landmarks: np.ndarray) -> np.ndarray:
        """This stack's landmarks in a layout the official crop geometry knows (68 points for FaceMesh)."""
        return mesh_to_68(landmarks)

    async def track(self, image: np.ndarray, previous: np.ndarray) -> np.ndarray | None:
        """Landmarks of the face seen at ``previous`` landmarks in the last frame, or None when it is lost."""
        (landmarks, score), = await self.landmarks(image, [facemesh.roi_from_landmarks(previous)])
        return landmarks[:, :2] if score >= self.config.min_face_score else None

    def _face(self, detection: blazeface.Detection, mesh: np.ndarray, face_score: float) -> Face:
        landmarks = mesh[:, :2]
        eyes, lip = liveportrait_ratios(landmarks, self.config.ratios)
        transform = crop_transform(mesh_to_68(landmarks), self.config.crop)
        return Face(np.asarray(detection.box, np.float64), float(detection.score), landmarks,
                    (float(eyes[0]), float(eyes[1])), lip, transform, face_score, detection.keypoints,
                    eye_openness(mesh))

    async def source_crop(self, image: np.ndarray, face_index: int = 0, order: str | None = None,
                          hint: np.ndarray | None = None) -> SourceCrop:
        """The chosen face's 512 and 256 crops, crop matrices and ratios; ``NoFaceError`` if there is no face."""
        faces = await self.detect(image, order, hint)
        if not faces:
            raise NoFaceError(f"no face was found in the source image; {NO_FACE_HINT}")
        face = select_face(faces, face_index, hint)
        return crop_face(image, face)


def crop_face(image: np.ndarray, face: Face) -> SourceCrop:
    crop512 = warp_crop(image, face.crop)
    return SourceCrop(resize_crop(crop512), crop512, face.crop.M_o2c, face.crop.M_c2o, face.eye_ratio,
                      face.lip_ratio, face)
