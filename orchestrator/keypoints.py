"""LivePortrait's keypoint math for an image source, as ``LivePortraitPipeline.execute`` does it (numpy float32).

Per driving frame i (frame 0 is the reference), with the source's canonical keypoints ``x_c_s``, rotation ``R_s``,
expression ``exp_s``, scale and translation:

* relative motion: ``R_new = R_d_i R_d_0^T R_s``, ``delta_new = exp_s + (exp_d_i - exp_d_0)`` (a single driving
  image: ``exp_s + (exp_d - lip_array)``), ``scale_new = scale_s * scale_d_i / scale_d_0``,
  ``t_new = t_s + (t_d_i - t_d_0)``; ``animation_region`` keeps the source's values for what it does not drive;
* absolute motion: the driving rotation and translation, selected expression components, the source's scale;
* ``t_new[z] = 0`` and ``x_d_i = scale_new * (x_c_s @ R_new + delta_new) + t_new``;
* expression-friendly (relative, driving video): ``x_d_i = x_s + (x_d_i - x_d_0) * m`` with the convex-hull
  multiplier ``m`` of frame 0;
* then stitching / retargeting (MLPs served by Triton; see ``Retargeting``) and
  ``x_d_i = x_s + (x_d_i - x_s) * driving_multiplier``.
* animal (official ``live_portrait_pipeline_animal.py``): ``R_new = R_d_i``, ``delta_new = exp_d_i``,
  ``scale_new = scale_s``, ``t_new = t_d_i`` (z 0), always with the multiplier relative to frame 0; stitching and
  ``driving_multiplier`` as above; no retargeting.

The stitching and retargeting MLPs run in Triton; this module prepares their inputs and combines their outputs.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np

F32 = np.float32
NUM_KP = 21
REGIONS = ("all", "exp", "pose", "lip", "eyes")
DRIVING_OPTIONS = ("expression-friendly", "pose-friendly")
LIP_KEYPOINTS = (6, 12, 14, 17, 19, 20)
EYE_KEYPOINTS = (11, 13, 15, 16, 18)
ABSOLUTE_EXP_KEYPOINTS = (1, 2, 6, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20)
LIP_NORMALIZE_THRESHOLD = 0.03  # official InferenceConfig.lip_normalize_threshold

# The official "neutral expression" (src/utils/resources/lip_array.pkl, 1x21x3 float64): the reference expression
# of a single driving image in relative mode.
LIP_ARRAY = np.array([
    [-9.4524e-05, 0.00024222, -4.00974e-05], [0.000208596, 0.000468054, 1.27464e-05],
    [-0.000124602, 0.000324972, 4.425e-06], [0.000119652, -0.000456624, 5.40852e-05],
    [-0.000265254, -7.4598e-05, -1.5528e-05], [-3.34884e-05, -0.000183036, -3.49404e-06],
    [-4.75428e-07, -4.52466e-07, 1.59498e-06], [-0.000541296, 0.0026328, 7.2486e-06],
    [-1.1694e-05, 5.00502e-06, 9.9888e-06], [8.0286e-07, 5.19132e-06, -0.000409344],
    [0.000166878, -1.9815e-05, -8.8548e-05], [-1.51536e-05, 8.2506e-05, 5.94012e-06],
    [-2.61054e-07, 2.7591e-06, 2.21028e-06], [-6.6282e-05, -6.8286e-05, -3.45318e-06],
    [-0.00083262, -0.00179592, -2.59176e-06], [6.9714e-06, 3.65514e-05, -1.8978e-06],
    [-4.80876e-06, 7.1148e-06, -1.03236e-05], [-0.00063684, -0.0011661, 5.62314e-05],
    [0.00028329, -1.45656e-05, 1.09746e-05], [-4.16022e-06, -0.0150906, -0.0025494],
    [0.000222474, 0.00562788, 0.00272646],
], np.float64)


@dataclass(frozen=True)
class Motion:
    """Motion of N frames (what the motion extractor gives, or a template holds). Arrays are float32."""

    scale: np.ndarray  # (N,)
    R: np.ndarray  # (N, 3, 3), row-vector convention: keypoints @ R
    exp: np.ndarray  # (N, 21, 3)
    t: np.ndarray  # (N, 3)
    eye_ratio: np.ndarray | None = None  # (N, 2) driving eye-open ratios
    lip_ratio: np.ndarray | None = None  # (N,) driving lip-open ratio

    def __len__(self) -> int:
        return len(self.scale)

    def __getitem__(self, index: slice) -> "Motion":
        pick = (lambda a: None if a is None else a[index])
        return Motion(self.scale[index], self.R[index], self.exp[index], self.t[index], pick(self.eye_ratio),
                      pick(self.lip_ratio))

    @staticmethod
    def concat(parts: list["Motion"]) -> "Motion":
        """Consecutive chunks as one motion (the eye/lip ratios only when every part has them)."""
        if len(parts) == 1:
            return parts[0]
        fields = ("scale", "R", "exp", "t", "eye_ratio", "lip_ratio")
        values = [[getattr(p, f) for p in parts] for f in fields]
        return Motion(*(None if any(v is None for v in vs) else np.concatenate(vs) for vs in values))


@dataclass(frozen=True)
class SourceKeypoints:
    """The source portrait's motion-extractor outputs and its transformed keypoints ``x_s`` (one face)."""

    kp: np.ndarray  # (21, 3) canonical keypoints x_c_s
    R: np.ndarray  # (3, 3)
    exp: np.ndarray  # (21, 3)
    scale: float
    t: np.ndarray  # (3,)
    x_s: np.ndarray  # (21, 3)


@dataclass(frozen=True)
class KeypointOptions:
    """The official CLI defaults."""

    relative_motion: bool = True
    driving_option: str = "expression-friendly"
    driving_multiplier: float = 1.0
    animation_region: str = "all"
    stitching: bool = True
    eye_retargeting: bool = False
    lip_retargeting: bool = False
    normalize_lip: bool = False
    animal: bool = False  # the official animal pipeline's motion (``KeypointComposer``; no retargeting)

    def __post_init__(self):
        if self.animation_region not in REGIONS:
            raise ValueError(f"unknown animation_region {self.animation_region!r}; choose one of {', '.join(REGIONS)}")
        if self.driving_option not in DRIVING_OPTIONS:
            raise ValueError(f"unknown driving_option {self.driving_option!r}")
        if not np.isfinite(self.driving_multiplier):
            raise ValueError("driving_multiplier must be a finite number")

    @property
    def retargeting(self) -> bool:
        return self.eye_retargeting or self.lip_retargeting


def rotation_matrix(pitch: np.ndarray, yaw: np.ndarray, roll: np.ndarray) -> np.ndarray:
    """Official ``get_rotation_matrix`` (degrees in): (Rz(roll) Ry(yaw) Rx(pitch))^T, shape (N, 3, 3)."""
    x, y, z = (np.asarray(a, F32).reshape(-1) / F32(180) * F32(np.pi) for a in (pitch, yaw, roll))
    one, zero = np.ones_like(x), np.zeros_like(x)
    rot_x = np.stack([one, zero, zero, zero, np.cos(x), -np.sin(x), zero, np.sin(x), np.cos(x)], 1).reshape(-1, 3, 3)
    rot_y = np.stack([np.cos(y), zero, np.sin(y), zero, one, zero, -np.sin(y), zero, np.cos(y)], 1).reshape(-1, 3, 3)
    rot_z = np.stack([np.cos(z), -np.sin(z), zero, np.sin(z), np.cos(z), zero, zero, zero, one], 1).reshape(-1, 3, 3)
    return np.ascontiguousarray((rot_z @ rot_y @ rot_x).transpose(0, 2, 1))


def transform_keypoints(kp: np.ndarray, R: np.ndarray, exp: np.ndarray, scale: np.ndarray,
                        t: np.ndarray) -> np.ndarray:
    """Official ``transform_keypoint``: ``scale * (kp @ R + exp)``, plus tx, ty (tz unused). Batched (N, 21, 3)."""
    x = (kp @ R + exp) * np.asarray(scale, F32).reshape(-1, 1, 1)
    x[:, :, :2] += np.asarray(t, F32).reshape(-1, 3)[:, None, :2]
    return x.astype(F32)


def motion_from_extractor(outputs: dict[str, np.ndarray]) -> Motion:
    """Motion of a batch of images from the ``motion_extractor`` outputs (pitch/yaw/roll degrees, t, exp, scale)."""
    R = rotation_matrix(outputs["pitch"], outputs["yaw"], outputs["roll"])
    return Motion(np.asarray(outputs["scale"], F32).reshape(-1), R, np.asarray(outputs["exp"], F32).reshape(-1, 21, 3),
                  np.asarray(outputs["t"], F32).reshape(-1, 3))


def frames_keypoints(outputs: dict[str, np.ndarray]) -> tuple[Motion, np.ndarray, np.ndarray]:
    """Motion, canonical keypoints ``x_c`` (N, 21, 3) and transformed keypoints ``x_s`` (N, 21, 3) of a batch of
    images (a source video's frames) from the ``motion_extractor`` outputs."""
    motion = motion_from_extractor(outputs)
    kp = np.asarray(outputs["kp"], F32).reshape(-1, NUM_KP, 3)
    return motion, kp, transform_keypoints(kp, motion.R, motion.exp, motion.scale, motion.t)


def source_keypoints(outputs: dict[str, np.ndarray]) -> SourceKeypoints:
    """The source's keypoint state from the ``motion_extractor`` outputs of one image."""
    motion, kp, x_s = frames_keypoints({name: value[:1] for name, value in outputs.items()})
    return SourceKeypoints(kp[0], motion.R[0], motion.exp[0], float(motion.scale[0]), motion.t[0], x_s[0])


def convex_hull_volume(points: np.ndarray) -> float:
    """Volume of the convex hull of a few 3-D points (float64), like ``scipy.spatial.ConvexHull(points).volume``.

    Every supporting plane through three of the points is a face; each face polygon (all points on the plane) with
    the centroid forms a pyramid, and the pyramids fill the hull.
    """
    p = np.asarray(points, np.float64).reshape(-1, 3)
    centroid = p.mean(axis=0)
    extent = float(np.ptp(p, axis=0).max())
    if extent == 0:
        return 0.0
    tol = 1e-10 * extent
    triples = np.array(list(combinations(range(len(p)), 3)))
    normals = np.cross(p[triples[:, 1]] - p[triples[:, 0]], p[triples[:, 2]] - p[triples[:, 0]])
    lengths = np.linalg.norm(normals, axis=1)
    keep = lengths > 1e-12 * extent ** 2
    normals = normals[keep] / lengths[keep, None]
    offsets = np.einsum("ij,ij->i", normals, p[triples[keep, 0]])
    distances = p @ normals.T - offsets  # (points, planes)
    flip = (distances >= -tol).all(axis=0)  # every point on the positive side: turn the normal outwards
    normals[flip], offsets[flip], distances[:, flip] = -normals[flip], -offsets[flip], -distances[:, flip]
    supporting = (distances <= tol).all(axis=0)
    volume, seen = 0.0, set()
    for plane in np.flatnonzero(supporting):
        on_plane = np.flatnonzero(np.abs(distances[:, plane]) <= tol)
        key = tuple(on_plane)
        if key in seen:
            continue
        seen.add(key)
        height = offsets[plane] - normals[plane] @ centroid
        volume += _polygon_area(p[on_plane], normals[plane]) * height / 3.0
    return float(volume)


def _polygon_area(points: np.ndarray, normal: np.ndarray) -> float:
    """Area of the convex polygon spanned by coplanar points (any order)."""
    center = points.mean(axis=0)
    u = points[0] - center
    u = u / np.linalg.norm(u)
    v = np.cross(normal, u)
    rel = points - center
    order = np.argsort(np.arctan2(rel @ v, rel @ u))
    ring = rel[order]
    return float(0.5 * abs(np.cross(ring, np.roll(ring, -1, axis=0)).sum(axis=0) @ normal))


def motion_multiplier(x_s: np.ndarray, x_d_0: np.ndarray) -> float:
    """Official ``calc_motion_multiplier``: sqrt(hull volume of x_s) / sqrt(hull volume of x_d_0)."""
    return float(np.sqrt(convex_hull_volume(x_s)) / np.sqrt(convex_hull_volume(x_d_0)))


def combined_eye_ratio(source_eyes: tuple[float, float], driving_eyes: np.ndarray) -> np.ndarray:
    """Eye-retargeting MLP input (N, 3): [source left, source right, driving left] (official: only ``c_d[0][0]``)."""
    driving = np.asarray(driving_eyes, F32).reshape(-1, 2)
    source = np.broadcast_to(np.asarray(source_eyes, F32), (len(driving), 2))
    return np.concatenate([source, driving[:, :1]], axis=1).astype(F32)


def combined_lip_ratio(source_lip: float | np.ndarray, driving_lip: np.ndarray) -> np.ndarray:
    """Lip-retargeting MLP input (N, 2): [source lip (one, or one per frame of a source video), driving lip]."""
    driving = np.asarray(driving_lip, F32).reshape(-1, 1)
    source = np.broadcast_to(np.asarray(source_lip, F32).reshape(-1, 1), driving.shape)
    return np.concatenate([source, driving], axis=1)


class KeypointComposer:
    """Driving keypoints frame after frame (chunks of any size; frame 0 of the first chunk is the reference)."""

    def __init__(self, source: SourceKeypoints, options: KeypointOptions, driving_is_video: bool):
        self.source = source
        self.options = options
        self.driving_is_video = driving_is_video
        self._reference: Motion | None = None
        self._x_d_0: np.ndarray | None = None
        self.multiplier: float | None = None

    @property
    def expression_friendly(self) -> bool:
        """The convex-hull multiplier relative to frame 0 (the animal pipeline always uses it)."""
        o = self.options
        if o.animal:
            return True
        return o.relative_motion and o.driving_option == "expression-friendly" and self.driving_is_video

    def compose(self, motion: Motion) -> np.ndarray:
        """(N, 21, 3) driving keypoints before stitching/retargeting (``x_d_i_new`` after the multiplier step)."""
        if self._reference is None:
            self._reference = motion[0:1]
        x = self.raw(motion)
        if self.expression_friendly:
            if self._x_d_0 is None:
                self._x_d_0 = x[0].copy()
                self.multiplier = motion_multiplier(self.source.x_s, self._x_d_0)
            x = ((x - self._x_d_0) * F32(self.multiplier) + self.source.x_s).astype(F32)
        return x

    def raw(self, motion: Motion) -> np.ndarray:
        """``scale_new * (x_c_s @ R_new + delta_new) + t_new`` per frame (t_new has no z: ``transform_keypoints``)."""
        new = self.new_motion(motion)
        return transform_keypoints(self.source.kp, new.R, new.exp, new.scale, new.t)

    def new_motion(self, motion: Motion) -> Motion:
        """Per frame ``R_new``, ``delta_new`` (as ``exp``), ``scale_new`` and ``t_new`` (z set to 0)."""
        src, o, n = self.source, self.options, len(motion)
        ref = self._reference if self._reference is not None else motion[0:1]
        region = o.animation_region
        moves_pose = region in ("all", "pose")
        delta = np.broadcast_to(src.exp, (n, NUM_KP, 3)).copy()
        if o.animal:  # official live_portrait_pipeline_animal.py: the driving R, exp, t; the source's scale
            R_new, delta, scale, t = motion.R, motion.exp, np.full(n, src.scale, F32), motion.t
        elif o.relative_motion:
            R_new = (motion.R @ ref.R[0].T) @ src.R if moves_pose else np.broadcast_to(src.R, (n, 3, 3))
            if self.driving_is_video:
                driven = src.exp + (motion.exp - ref.exp[0])
            else:
                driven = src.exp + (motion.exp - LIP_ARRAY.astype(F32))
            if region in ("all", "exp"):
                delta = driven
            elif region == "lip":
                delta[:, LIP_KEYPOINTS] = driven[:, LIP_KEYPOINTS]
            elif region == "eyes":
                eyes = driven if self.driving_is_video else src.exp + motion.exp
                delta[:, EYE_KEYPOINTS] = eyes[:, EYE_KEYPOINTS]
            scale = src.scale * (motion.scale / ref.scale[0]) if region == "all" else np.full(n, src.scale, F32)
            t = src.t + (motion.t - ref.t[0]) if moves_pose else np.broadcast_to(src.t, (n, 3))
        else:
            R_new = motion.R if moves_pose else np.broadcast_to(src.R, (n, 3, 3))
            delta = region_expression(delta, motion.exp, region)
            scale = np.full(n, src.scale, F32)
            t = motion.t if moves_pose else np.broadcast_to(src.t, (n, 3))
        t = np.array(t, F32)
        t[:, 2] = 0
        return Motion(np.asarray(scale, F32).reshape(-1), np.asarray(R_new, F32), np.asarray(delta, F32), t)

    def finalize(self, x: np.ndarray) -> np.ndarray:
        """``x_s + (x - x_s) * driving_multiplier`` (applied in every mode, as the official code does)."""
        return apply_multiplier(self.source.x_s, x, self.options.driving_multiplier)


def apply_multiplier(x_s: np.ndarray, x: np.ndarray, multiplier: float) -> np.ndarray:
    """The official last step: ``x_s + (x - x_s) * driving_multiplier``."""
    return (x_s + (x - x_s) * F32(multiplier)).astype(F32)


def region_expression(own: np.ndarray, driven: np.ndarray, region: str) -> np.ndarray:
    """``own`` expressions (N, 21, 3, modified in place) with the components ``animation_region`` drives taken from
    ``driven``: for ``all``/``exp`` the official absolute-mode subset (keypoints 1, 2, 6, 11-20 whole, 3-4 y, 5 z,
    8 z, 9 y and z), for ``lip``/``eyes`` those keypoints."""
    if region in ("all", "exp"):
        own[:, ABSOLUTE_EXP_KEYPOINTS] = driven[:, ABSOLUTE_EXP_KEYPOINTS]
        own[:, 3:5, 1] = driven[:, 3:5, 1]
        own[:, 5, 2] = driven[:, 5, 2]
        own[:, 8, 2] = driven[:, 8, 2]
        own[:, 9, 1:] = driven[:, 9, 1:]
    elif region == "lip":
        own[:, LIP_KEYPOINTS] = driven[:, LIP_KEYPOINTS]
    elif region == "eyes":
        own[:, EYE_KEYPOINTS] = driven[:, EYE_KEYPOINTS]
    return own


@dataclass(frozen=True)
class RetargetPlan:
    """Which MLPs a frame batch needs, following the official 'Algorithm 1' branches."""

    stitch: bool
    eye: bool
    lip: bool
    add_lip_normalization: bool
    replace_by_source: bool  # retargeting with relative motion: x = x_s + deltas


def retarget_plan(options: KeypointOptions, has_landmarks: bool, source_lip: float | None) -> RetargetPlan:
    """Retargeting and lip normalisation need the source's landmarks (official); stitching does not."""
    if not has_landmarks:
        return RetargetPlan(options.stitching, False, False, False, options.retargeting and options.relative_motion)
    if not options.retargeting:
        return RetargetPlan(options.stitching, False, False, needs_lip_normalization(options, source_lip), False)
    return RetargetPlan(options.stitching, options.eye_retargeting, options.lip_retargeting, False,
                        options.relative_motion)


def needs_lip_normalization(options: KeypointOptions, source_lip: float | None) -> bool:
    """Official ``flag_normalize_lip``: close the source's mouth first when it is open (ratio >= 0.03)."""
    return (options.normalize_lip and options.relative_motion and source_lip is not None
            and source_lip >= LIP_NORMALIZE_THRESHOLD)


def combine_retargeting(x: np.ndarray, x_s: np.ndarray, plan: RetargetPlan, eye_delta: np.ndarray | None,
                        lip_delta: np.ndarray | None) -> np.ndarray:
    """The retargeting branch before stitching: x_s (relative) or x, plus the eye and lip deltas."""
    base = np.broadcast_to(x_s, x.shape) if plan.replace_by_source else x
    out = base.astype(F32).copy()
    for delta in (eye_delta, lip_delta):
        if delta is not None:
            out += delta
    return out


class VideoSourceComposer:
    """The official keypoint math for a source video (``LivePortraitPipeline.execute`` with a source video), frame i
    pairing source frame i with driving frame i (a driving image: its one frame for every source frame).

    The values the official code smooths over the clip (``targets``, one row of 9 + 63 per frame):

    * relative: ``R_d_i R_d_0^T R_s_i`` (a driving image: ``R_s_i``) and ``exp_s_i + exp_d_i - exp_d_0`` (a driving
      image: ``exp_s_i + exp_d_0 - lip_array``);
    * absolute: ``R_d_i`` and ``exp_d_i``.

    Then (``compose``) per frame, from the (smoothed) targets: ``R_new`` = the target rotation when
    ``animation_region`` moves the pose, else ``R_s_i``; ``delta_new`` = ``exp_s_i`` with the region's components
    replaced by the target's (for ``all``/``exp`` the absolute-mode subset, as the official code does for a source
    video); ``scale_new = scale_s_i``; ``t_new = t_s_i`` (absolute with pose: ``t_d_i``), z zeroed;
    ``x = scale_new * (x_c_s_i @ R_new + delta_new) + t_new``. No expression-friendly multiplier (the official code
    applies it to an image source only).
    """

    def __init__(self, options: KeypointOptions, driving_is_video: bool):
        self.options = options
        self.driving_is_video = driving_is_video
        self._reference: Motion | None = None

    def targets(self, source: Motion, driving: Motion) -> np.ndarray:
        """(N, 72) rows [R (9), exp (63)] of the frames to smooth."""
        if self._reference is None:
            self._reference = driving[0:1]
        ref, n = self._reference, len(source)
        if self.options.relative_motion:
            if self.driving_is_video:
                R = (driving.R @ ref.R[0].T) @ source.R
                exp = source.exp + (driving.exp - ref.exp[0])
            else:
                R = source.R
                exp = source.exp + (ref.exp[0] - LIP_ARRAY.astype(F32))
        else:
            R = driving.R if self.driving_is_video else np.broadcast_to(ref.R[0], (n, 3, 3))
            exp = driving.exp if self.driving_is_video else np.broadcast_to(ref.exp[0], (n, NUM_KP, 3))
        return np.concatenate([np.reshape(R, (n, 9)), np.reshape(exp, (n, 63))], axis=1).astype(np.float64)

    def compose(self, kp: np.ndarray, source: Motion, driving: Motion, targets: np.ndarray) -> np.ndarray:
        """(N, 21, 3) driving keypoints before stitching/retargeting."""
        o, n = self.options, len(source)
        R_target = targets[:, :9].reshape(n, 3, 3).astype(F32)
        exp_target = targets[:, 9:].reshape(n, NUM_KP, 3).astype(F32)
        region = o.animation_region
        moves_pose = region in ("all", "pose")
        R_new = R_target if moves_pose else source.R
        delta = region_expression(np.array(source.exp, F32), exp_target, region)
        if not o.relative_motion and moves_pose:
            t = driving.t if self.driving_is_video else np.broadcast_to(self._reference.t[0], (n, 3))
        else:
            t = source.t
        return transform_keypoints(kp, R_new, delta, source.scale, t)  # t's z is not used
