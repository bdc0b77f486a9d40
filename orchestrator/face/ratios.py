"""Eye and lip openness from FaceMesh landmarks, mapped onto LivePortrait's ratio scale.

Raw ratios use the same definitions as LivePortrait's ``calc_eye_close_ratio`` / ``calc_lip_close_ratio`` on its
203-point landmarks: mid upper lid to mid lower lid over the eye-corner distance, per eye; inner upper lip to inner
lower lip over the mouth-corner distance. FaceMesh (without the attention refinement) never closes the lids fully:
a closed eye still measures about 0.15 where the 203-point model gives about 0.0, so the eye ratio is mapped
linearly (see README "Eye and lip ratio calibration"). The lip ratios already agree in scale and are kept as measured.

``eye_openness`` is the motion generator's own measure (Ditto's ``EyeAttrUtilsByMP.LR_open`` on MediaPipe's mesh):
per eye, the three lid heights (outer, middle, inner pair of lid points) over the eye-corner distance, in 3D.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .mesh_layout import EYE_IMAGE_LEFT, EYE_IMAGE_RIGHT, INNER_LIP, MOUTH_CORNERS

EPS = 1e-6


@dataclass(frozen=True)
class RatioMapping:
    """LivePortrait ratio = clip(gain * (raw - closed), 0, upper)."""

    eye_closed: float = 0.15  # raw FaceMesh eye ratio of a closed eye
    eye_gain: float = 2.0  # open eyes (raw ~0.35) map to ~0.4, the open level of the official 203-point ratios
    lip_closed: float = 0.0
    lip_gain: float = 1.0
    upper: float = 0.8  # the range of the official retargeting sliders

    def eye(self, raw: np.ndarray) -> np.ndarray:
        return np.clip(self.eye_gain * (np.asarray(raw) - self.eye_closed), 0.0, self.upper)

    def lip(self, raw: np.ndarray) -> np.ndarray:
        return np.clip(self.lip_gain * (np.asarray(raw) - self.lip_closed), 0.0, self.upper)


def _distance(points: np.ndarray, a: int, b: int) -> np.ndarray:
    return np.linalg.norm(points[..., a, :2] - points[..., b, :2], axis=-1)


def raw_eye_ratios(landmarks: np.ndarray) -> np.ndarray:
    """[..., 2]: (eye on the image left, eye on the image right), lid distance over eye width."""
    pts = np.asarray(landmarks, np.float64)
    ratios = [_distance(pts, e["upper"], e["lower"]) / (_distance(pts, e["outer"], e["inner"]) + EPS)
              for e in (EYE_IMAGE_LEFT, EYE_IMAGE_RIGHT)]
    return np.stack(ratios, axis=-1)


def raw_lip_ratio(landmarks: np.ndarray) -> np.ndarray:
    pts = np.asarray(landmarks, np.float64)
    return _distance(pts, *INNER_LIP) / (_distance(pts, *MOUTH_CORNERS) + EPS)


def liveportrait_ratios(landmarks: np.ndarray, mapping: RatioMapping = RatioMapping()) -> tuple[np.ndarray, float]:
    """(eye ratios (2,), lip ratio) of one face on LivePortrait's scale."""
    return mapping.eye(raw_eye_ratios(landmarks)), float(mapping.lip(raw_lip_ratio(landmarks)))


def official_ratios(landmarks203: np.ndarray) -> tuple[np.ndarray, float]:
    """The official definitions on 203-point landmarks (``retargeting_utils``), for the official face stack."""
    pts = np.asarray(landmarks203, np.float64)
    eyes = np.array([_distance(pts, 6, 18) / (_distance(pts, 0, 12) + EPS),
                     _distance(pts, 30, 42) / (_distance(pts, 24, 36) + EPS)])
    return eyes, float(_distance(pts, 90, 102) / (_distance(pts, 48, 66) + EPS))


# Ditto's eye points on the mesh (its "L" eye first: the one on the image left): the corners, then three
# (lower lid, upper lid) pairs
DITTO_EYES = (((33, 133), ((145, 159), (144, 160), (153, 158))),
              ((263, 362), ((374, 386), (373, 387), (380, 385))))


def eye_openness(mesh: np.ndarray) -> tuple[float, float]:
    """Ditto's eye-open conditions of one face from its FaceMesh points (x, y, depth; any common scale): per eye,
    the sum of three lid heights over the corner distance (open eyes measure about 0.9 to 1.2; FaceMesh never closes the lids fully, so a blink measures about 0.5)."""
    pts = np.asarray(mesh, np.float64)
    openness = []
    for corners, lids in DITTO_EYES:
        heights = sum(np.linalg.norm(pts[a] - pts[b]) for a, b in lids)
        openness.append(float(heights / (np.linalg.norm(pts[corners[0]] - pts[corners[1]]) + 1e-8)))
    return openness[0], openness[1]
