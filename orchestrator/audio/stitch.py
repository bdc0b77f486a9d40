"""Generated motion -> driving keypoints of an image source (Ditto ``motion_stitch.py``, image source, no blink
array, no extra controls), before LivePortrait's stitching MLP (which the render path applies as for video).

Per frame, relative to the reference motion ``d0`` (the first generated frame):

* exp, pitch, yaw, roll, t: ``source + (generated - d0)``; the angles are mixed as 66-bin logits, and only then
  turned into degrees (softmax expectation, ``sum(p_i i) * 3 - 97.5``);
* scale and canonical keypoints: the source's;
* expression: the mixed values on the lip keypoints (6, 12, 14, 17, 19, 20) and eye keypoints (11, 13, 15, 16, 18),
  the source's elsewhere;
* gaze fix: the eye-ball keypoints 11 and 15 move against the head's yaw/pitch change from the source
  (x by 0.0007 or 0.001 per 0.26 degree, y by -0.001 per 0.28 degree);
* ``x_d = scale * (kp @ R(pitch, yaw, roll) + exp) + (tx, ty, 0)`` (``keypoints.transform_keypoints``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..keypoints import EYE_KEYPOINTS, LIP_KEYPOINTS, NUM_KP, rotation_matrix, transform_keypoints
from .motion import motion_fields, motion_vector

F32 = np.float32
DRIVEN = ("exp", "pitch", "yaw", "roll", "t")
GAZE_X_RATIO, GAZE_Y_RATIO = 0.26, 0.28


def bins_to_degrees(logits: np.ndarray) -> np.ndarray:
    """(N, 66) pose-bin logits -> (N,) degrees: the softmax expectation of the bin index * 3 - 97.5."""
    logits = np.asarray(logits, F32)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    return (np.sum(p * np.arange(logits.shape[1], dtype=F32), axis=1) * F32(3) - F32(97.5)).astype(F32)


def expression_mask() -> np.ndarray:
    """(63,) 1 on the lip and eye keypoints (driven by the audio), 0 elsewhere (kept from the source)."""
    mask = np.zeros((NUM_KP, 3), F32)
    mask[list(LIP_KEYPOINTS) + list(EYE_KEYPOINTS)] = 1
    return mask.reshape(-1)


@dataclass(frozen=True)
class SourceMotion:
    """The source's raw motion-extractor outputs: scale (1), pitch/yaw/roll logits (66), t (3), exp (63), kp (63)."""

    fields: dict[str, np.ndarray]

    @classmethod
    def from_raw(cls, raw: dict[str, np.ndarray]) -> "SourceMotion":
        sizes = {"scale": 1, "pitch": 66, "yaw": 66, "roll": 66, "t": 3, "exp": 63, "kp": 63}
        fields = {}
        for name, size in sizes.items():
            value = np.asarray(raw[name], F32).reshape(1, -1)
            if value.shape[1] != size:
                raise ValueError(f"source motion {name}: expected {size} values, got {value.shape[1]}")
            fields[name] = value
        return cls(fields)

    def vector(self) -> np.ndarray:
        """(265,) the generator's motion vector of the source (its first ``kp_cond``)."""
        return motion_vector(self.fields)

    def keypoints(self) -> np.ndarray:
        """x_s (1, 21, 3)."""
        return transform(self.fields)


def transform(fields: dict[str, np.ndarray]) -> np.ndarray:
    """Raw fields (angles as logits) -> keypoints (N, 21, 3)."""
    R = rotation_matrix(*(bins_to_degrees(fields[a]) for a in ("pitch", "yaw", "roll")))
    n = len(R)
    return transform_keypoints(np.broadcast_to(fields["kp"].reshape(-1, NUM_KP, 3), (n, NUM_KP, 3)), R,
                               fields["exp"].reshape(n, NUM_KP, 3), fields["scale"].reshape(-1), fields["t"])


def mix(source: SourceMotion, generated: np.ndarray, reference: np.ndarray) -> dict[str, np.ndarray]:
    """The fields fed to the keypoint transform for (N, 265) generated motion relative to ``reference`` (265,)."""
    gen, d0 = motion_fields(generated), motion_fields(reference)
    s = source.fields
    n = len(generated)
    mixed = {k: s[k] + (gen[k] - d0[k]) for k in DRIVEN}
    mixed["scale"] = np.repeat(s["scale"], n, axis=0)
    mixed["kp"] = np.repeat(s["kp"], n, axis=0)
    mask = expression_mask()
    mixed["exp"] = mixed["exp"] * mask + s["exp"] * (1 - mask)
    mixed["exp"] = fix_gaze(mixed["exp"], source, mixed)
    return mixed


def fix_gaze(exp: np.ndarray, source: SourceMotion, mixed: dict[str, np.ndarray]) -> np.ndarray:
    dx = (bins_to_degrees(mixed["yaw"]) - bins_to_degrees(source.fields["yaw"])) * F32(GAZE_X_RATIO)
    dy = (bins_to_degrees(mixed["pitch"]) - bins_to_degrees(source.fields["pitch"])) * F32(GAZE_Y_RATIO)
    exp = exp.copy()
    right = dx > 0
    exp[:, 33] += dx * np.where(right, F32(0.0007), F32(0.001))  # keypoint 11, x
    exp[:, 45] += dx * np.where(right, F32(0.001), F32(0.0007))  # keypoint 15, x
    exp[:, 34] += dy * F32(-0.001)  # keypoint 11, y
    exp[:, 46] += dy * F32(-0.001)  # keypoint 15, y
    return exp


def stitch(source: SourceMotion, generated: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """(N, 265) generated motion -> driving keypoints x_d (N, 21, 3), before the stitching MLP."""
    return transform(mix(source, np.asarray(generated, F32).reshape(-1, 265), reference))
