"""Portrait edits (numpy only): the official app's retargeting sliders and ComfyUI-AdvancedLivePortrait's expression
editor -> rotation, expression, scale deltas and eye/lip target ratios, applied to keypoints.

Official = KwaiVGI/LivePortrait ``app.py`` (slider ranges) and ``src/gradio_pipeline.py``
(``execute_image_retargeting``, ``update_delta_new_*``); ALP = PowerHouseMan/ComfyUI-AdvancedLivePortrait
``nodes.py`` (``ExpressionEditor`` ranges, ``LP_Engine.calc_fe``). Both write expression deltas ``exp[k, axis]`` at
the 21 implicit keypoints; the formula of each field is the table ``EXPRESSION`` below (coefficient per unit, for
positive/negative values where the official code branches on the sign).

The edited keypoints of a frame with motion (R, exp, scale, t) are, as in the official app,
``mov_z * scale * (kp @ R' + exp * src_ratio + delta) + t`` (``exp[5]``, ALP's translation row, keeps its value) with
``R'`` the rotation of the frame's (pitch, yaw, roll) plus the edit's degrees. They are applied as an offset:
``x + (edited - unedited)``, so an edit adds the same change on top of any driving motion (and nothing at all when
every field is neutral). ALP adds its expression before rotating (``(kp + exp) @ R``); here every expression delta
is added after the rotation, the official way, so one table serves both.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

F32 = np.float32
NUM_KP = 21
OFFICIAL = "LivePortrait app.py / gradio_pipeline.py"
ALP = "ComfyUI-AdvancedLivePortrait nodes.py ExpressionEditor"


@dataclass(frozen=True)
class EditField:
    name: str
    low: float
    high: float
    neutral: float | None  # the value meaning "no change" (None: eye/lip ratio, "the source's own")
    meaning: str
    origin: str


FIELDS: tuple[EditField, ...] = (
    EditField("eye_ratio", 0.0, 0.8, None, "target eyes-open ratio (eye retargeting MLP)", OFFICIAL),
    EditField("lip_ratio", 0.0, 0.8, None, "target lip-open ratio (lip retargeting MLP)", OFFICIAL),
    EditField("head_pitch", -15.0, 15.0, 0.0, "relative pitch, degrees", OFFICIAL),
    EditField("head_yaw", -25.0, 25.0, 0.0, "relative yaw, degrees", OFFICIAL),
    EditField("head_roll", -15.0, 15.0, 0.0, "relative roll, degrees", OFFICIAL),
    EditField("mov_x", -0.19, 0.19, 0.0, "x-axis movement (exp[5].x -= mov_x)", OFFICIAL),
    EditField("mov_y", -0.19, 0.19, 0.0, "y-axis movement (exp[5].y += mov_y)", OFFICIAL),
    EditField("mov_z", 0.9, 1.2, 1.0, "z-axis movement (scale multiplier)", OFFICIAL),
    EditField("lip_pout", -0.09, 0.09, 0.0, "pouting (lip_variation_zero)", OFFICIAL),
    EditField("lip_purse", -20.0, 15.0, 0.0, "pursing (lip_variation_one)", OFFICIAL),
    EditField("lip_grin", 0.0, 15.0, 0.0, "grin (lip_variation_two)", OFFICIAL),
    EditField("lip_open", -90.0, 120.0, 0.0, "lip close <-> open (lip_variation_three)", OFFICIAL),
    EditField("smile", -0.3, 1.3, 0.0, "smile", OFFICIAL),
    EditField("wink", 0.0, 39.0, 0.0, "wink", OFFICIAL),
    EditField("eyebrow", -30.0, 30.0, 0.0, "eyebrow", OFFICIAL),
    EditField("gaze_x", -30.0, 30.0, 0.0, "eye gaze horizontal (eyeball_direction_x)", OFFICIAL),
    EditField("gaze_y", -63.0, 63.0, 0.0, "eye gaze vertical (eyeball_direction_y)", OFFICIAL),
    EditField("rotate_pitch", -20.0, 20.0, 0.0, "pitch, degrees", ALP),
    EditField("rotate_yaw", -20.0, 20.0, 0.0, "yaw, degrees (ALP negates it)", ALP),
    EditField("rotate_roll", -20.0, 20.0, 0.0, "roll, degrees", ALP),
    EditField("blink", -20.0, 5.0, 0.0, "eyes closed (<0) / wide open (>0)", ALP),
    EditField("alp_eyebrow", -10.0, 15.0, 0.0, "eyebrow", ALP),
    EditField("alp_wink", 0.0, 25.0, 0.0, "wink (also roll and yaw -0.1 degree per unit)", ALP),
    EditField("pupil_x", -15.0, 15.0, 0.0, "gaze horizontal", ALP),
    EditField("pupil_y", -15.0, 15.0, 0.0, "gaze vertical", ALP),
    EditField("aaa", -30.0, 120.0, 0.0, "mouth open 'aaa' (also pitch -0.05 degree per unit)", ALP),
    EditField("eee", -20.0, 15.0, 0.0, "'eee'", ALP),
    EditField("woo", -20.0, 15.0, 0.0, "'woo'", ALP),
    EditField("alp_smile", -0.3, 1.3, 0.0, "smile", ALP),
    EditField("src_ratio", 0.0, 1.0, 1.0, "weight of the source's own expression (exp[5] kept)", ALP),
)
FIELD_BY_NAME = {f.name: f for f in FIELDS}

# Expression deltas: field -> [(keypoint, axis, coefficient for value > 0, coefficient for value <= 0)].
_SMILE = [(20, 1, -0.01), (14, 1, -0.02), (17, 1, 0.0065), (17, 2, 0.003), (13, 1, -0.00275), (16, 1, -0.00275),
          (3, 1, -0.0035), (7, 1, -0.0035)]  # update_delta_new_smile; calc_fe smile
_WINK = [(11, 1, 0.001), (13, 1, -0.0003), (17, 0, 0.0003), (17, 1, 0.0003), (3, 1, -0.0003)]
_PURSE = [(14, 1, 0.001), (3, 1, -0.0005), (7, 1, -0.0005), (17, 2, -0.0005)]  # lip_variation_one; ALP woo
_GRIN = [(20, 2, -0.001), (20, 1, -0.001), (14, 1, -0.001)]  # lip_variation_two; ALP eee
_OPEN = [(19, 1, 0.001), (19, 2, 0.0001), (17, 1, -0.0001)]  # lip_variation_three; ALP aaa (mouth)
_GAZE_X = [(11, 0, 0.0007, 0.001), (15, 0, 0.001, 0.0007)]  # sign-dependent
# gaze_y: y of 11 and 15 by -0.001, then blink = -gaze_y / 2 (official) with _BLINK_OFFICIAL
_BLINK_OFFICIAL = [(11, 1, -0.001), (13, 1, 0.0003), (15, 1, -0.001), (16, 1, 0.0003)]
_BLINK_ALP = _BLINK_OFFICIAL + [(1, 1, -0.00025), (2, 1, 0.00025)]
_EYEBROW = [(1, 1, 0.001, 0.0003), (2, 1, -0.001, -0.0003), (1, 0, 0.0, -0.001), (2, 0, 0.0, 0.001)]


def _linear(rows):
    return [(k, a, c, c) for k, a, c in rows]


EXPRESSION: dict[str, list[tuple[int, int, float, float]]] = {
    "smile": _linear(_SMILE), "alp_smile": _linear(_SMILE),
    "wink": _linear(_WINK), "alp_wink": _linear(_WINK),
    "eyebrow": _EYEBROW, "alp_eyebrow": _EYEBROW,
    "lip_pout": [(19, 0, 1.0, 1.0)],
    "lip_purse": _linear(_PURSE), "woo": _linear(_PURSE),
    "lip_grin": _linear(_GRIN), "eee": _linear(_GRIN),
    "lip_open": _linear(_OPEN), "aaa": _linear(_OPEN),
    "gaze_x": _GAZE_X, "pupil_x": _GAZE_X,
    "gaze_y": _linear([(11, 1, -0.001), (15, 1, -0.001)] + [(k, a, -c / 2) for k, a, c in _BLINK_OFFICIAL]),
    "pupil_y": _linear([(11, 1, -0.001), (15, 1, -0.001)] + [(k, a, -c / 2) for k, a, c in _BLINK_ALP]),
    "blink": _linear(_BLINK_ALP),
    "mov_x": [(5, 0, -1.0, -1.0)],  # the official app calls update_delta_new_mov_x(-mov_x)
    "mov_y": [(5, 1, 1.0, 1.0)],
}
# Rotation: field -> (pitch, yaw, roll) degrees per unit.
ROTATION: dict[str, tuple[float, float, float]] = {
    "head_pitch": (1.0, 0.0, 0.0), "head_yaw": (0.0, 1.0, 0.0), "head_roll": (0.0, 0.0, 1.0),
    "rotate_pitch": (1.0, 0.0, 0.0), "rotate_yaw": (0.0, -1.0, 0.0), "rotate_roll": (0.0, 0.0, 1.0),
    "alp_wink": (0.0, -0.1, -0.1), "aaa": (-0.05, 0.0, 0.0),
}


class InvalidEditError(ValueError):
    """A field is not finite or out of its range; the message names it (maps to INVALID_ARGUMENT)."""


@dataclass(frozen=True)
class Edit:
    """The set fields of an edit (unset ones are neutral)."""

    values: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self):
        for name, value in self.values.items():
            spec = FIELD_BY_NAME.get(name)
            if spec is None:
                raise InvalidEditError(f"unknown edit field {name!r}")
            # the bounds as float32 too: the wire carries float32 (0.19 arrives as 0.19000000298...)
            if not np.isfinite(value) or not min(spec.low, float(F32(spec.low))) <= value <= max(
                    spec.high, float(F32(spec.high))):
                raise InvalidEditError(f"edit.{name} must be between {spec.low:g} and {spec.high:g} "
                                       f"({spec.meaning}), got {value:g}")

    def get(self, name: str) -> float | None:
        return self.values.get(name, FIELD_BY_NAME[name].neutral)


@dataclass(frozen=True)
class EditDeltas:
    """What an edit does to one frame."""

    rotation: np.ndarray  # (3,) degrees added to (pitch, yaw, roll)
    exp: np.ndarray  # (21, 3) added to the expression
    scale: float  # multiplies the scale (mov_z)
    src_ratio: float  # multiplies the expression (row 5 kept)
    eye_ratio: float | None  # target eyes-open ratio (eye retargeting) or None
    lip_ratio: float | None


def deltas(edit: Edit) -> EditDeltas:
    exp = np.zeros((NUM_KP, 3), np.float64)
    rotation = np.zeros(3, np.float64)
    for name, value in edit.values.items():
        for k, axis, positive, negative in EXPRESSION.get(name, ()):
            exp[k, axis] += value * (positive if value > 0 else negative)
        if name in ROTATION:
            rotation += value * np.asarray(ROTATION[name])
    return EditDeltas(rotation, exp, float(edit.get("mov_z")), float(edit.get("src_ratio")),
                      edit.get("eye_ratio"), edit.get("lip_ratio"))


def euler_angles(R: np.ndarray) -> np.ndarray:
    """(pitch, yaw, roll) degrees of rotations in the official convention, R = (Rz(roll) Ry(yaw) Rx(pitch))^T;
    (N, 3, 3) -> (N, 3)."""
    M = np.asarray(R, np.float64).transpose(0, 2, 1)
    pitch = np.arctan2(M[:, 2, 1], M[:, 2, 2])
    yaw = np.arcsin(np.clip(-M[:, 2, 0], -1.0, 1.0))
    roll = np.arctan2(M[:, 1, 0], M[:, 0, 0])
    return np.degrees(np.stack([pitch, yaw, roll], axis=1))


def rotate(R: np.ndarray, degrees: np.ndarray) -> np.ndarray:
    """The rotations of (N, 3, 3) ``R`` with (N, 3) degrees added to their pitch, yaw, roll (unchanged rows where
    the delta is 0)."""
    from .keypoints import rotation_matrix

    degrees = np.broadcast_to(np.asarray(degrees, np.float64), (len(R), 3))
    out = np.array(R, F32)
    moved = np.flatnonzero(np.any(degrees != 0, axis=1))
    if len(moved):
        angles = euler_angles(R[moved]) + degrees[moved]
        out[moved] = rotation_matrix(angles[:, 0], angles[:, 1], angles[:, 2])
    return out


def edited_motion(R: np.ndarray, exp: np.ndarray, scale: np.ndarray, frames: list[EditDeltas]):
    """(R', exp', scale') of N frames with one edit per frame."""
    rotation = np.stack([d.rotation for d in frames])
    ratio = np.array([d.src_ratio for d in frames], F32).reshape(-1, 1, 1)
    new_exp = np.asarray(exp, F32) * ratio
    new_exp[:, 5] = np.asarray(exp, F32)[:, 5]
    new_exp = (new_exp + np.stack([d.exp for d in frames]).astype(F32)).astype(F32)
    new_scale = (np.asarray(scale, F32).reshape(-1) * np.array([d.scale for d in frames], F32)).astype(F32)
    return rotate(R, rotation), new_exp, new_scale


def keypoint_offsets(kp: np.ndarray, R: np.ndarray, exp: np.ndarray, scale: np.ndarray, t: np.ndarray,
                     frames: list[EditDeltas]) -> np.ndarray:
    """(N, 21, 3): edited minus unedited keypoints of frames with motion (R, exp, scale, t) (exactly 0 for a
    neutral edit)."""
    from .keypoints import transform_keypoints

    R2, exp2, scale2 = edited_motion(R, exp, scale, frames)
    return (transform_keypoints(kp, R2, exp2, scale2, t) - transform_keypoints(kp, R, exp, scale, t)).astype(F32)


def interpolate(a: Edit, b: Edit, weight: float) -> Edit:
    """``a`` + weight * (``b`` - ``a``) field by field (unset fields at their neutral value; eye/lip ratios must be set
    in both or in neither)."""
    if weight <= 0.0:
        return a
    if weight >= 1.0:
        return b
    values = {}
    for name in set(a.values) | set(b.values):
        x, y = a.get(name), b.get(name)
        if x is None or y is None:
            raise InvalidEditError(f"keyframes: {name} must be set in every keyframe or in none")
        values[name] = float(np.clip(x + weight * (y - x), FIELD_BY_NAME[name].low, FIELD_BY_NAME[name].high))
    return Edit(values)


EASINGS = {
    "linear": lambda u: u,
    "ease_in": lambda u: u * u,
    "ease_out": lambda u: 1.0 - (1.0 - u) ** 2,
    "ease_in_out": lambda u: 2 * u * u if u < 0.5 else 1.0 - 2 * (1.0 - u) ** 2,
    "step": lambda u: 1.0 if u >= 1.0 else 0.0,
}


@dataclass(frozen=True)
class Keyframe:
    edit: Edit
    duration_s: float  # transition from the previous keyframe (the first: held at the start)
    easing: str = "linear"


def keyframe_frames(keyframes: list[Keyframe], fps: float) -> int:
    """How many frames the keyframes make: round(total duration x fps), at least 1."""
    return max(1, int(round(float(sum(k.duration_s for k in keyframes)) * fps)))


def keyframe_edits(keyframes: list[Keyframe], fps: float, max_frames: int | None = None) -> list[Edit]:
    """One edit per output frame: round(total duration x fps) frames (at least 1) sampling the timeline evenly from
    0 to the total duration (the first frame is the first keyframe's edit, the last frame the last one's). More than
    ``max_frames`` is refused before any frame is made."""
    if not keyframes:
        raise InvalidEditError("keyframes: at least one keyframe is needed")
    if max_frames is not None and keyframe_frames(keyframes, fps) > max_frames:
        raise InvalidEditError(f"the keyframes make {keyframe_frames(keyframes, fps)} frames, more than the limit of "
                               f"{max_frames}")
    names = {n for n in ("eye_ratio", "lip_ratio") if any(n in k.edit.values for k in keyframes)}
    for name in names:
        if not all(name in k.edit.values for k in keyframes):
            raise InvalidEditError(f"keyframes: {name} must be set in every keyframe or in none")
    arrivals = np.cumsum([k.duration_s for k in keyframes])
    total = float(arrivals[-1])
    n = keyframe_frames(keyframes, fps)
    times = np.linspace(0.0, total, n) if n > 1 else np.zeros(1)
    edits = []
    for i, time in enumerate(times):
        if i == n - 1:
            edits.append(keyframes[-1].edit)
            continue
        k = int(np.searchsorted(arrivals, time, side="left"))  # first keyframe reached at or after `time`
        if k == 0:
            edits.append(keyframes[0].edit)
            continue
        start, span = arrivals[k - 1], keyframes[k].duration_s
        u = 1.0 if span <= 0 else (time - start) / span
        edits.append(interpolate(keyframes[k - 1].edit, keyframes[k].edit,
                                 EASINGS[keyframes[k].easing](float(np.clip(u, 0.0, 1.0)))))
    return edits
