"""Motion templates on the wire (``liveportrait.v1.MotionTemplate``) <-> ``keypoints.Motion`` arrays.

Only numpy and the generated protobuf code: the client library uses it too. Templates are never pickles here.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from protos.liveportrait.v1 import portrait_animator_pb2 as pb

from .keypoints import Motion
from .quoting import bad_values

FORMAT_VERSION = 1
F32 = np.float32
# What a template may hold (README "Motion templates"): finite values within bounds far beyond real motion (the
# official templates: scale 1.1-1.5, |exp| < 0.07, |t| < 0.21), so that only absurd ones are refused.
SCALE_RANGE = (0.1, 10.0)
EXP_LIMIT = 1.0  # |exp| per value: keypoint offsets, in the keypoints' units (a face spans about 1.5)
T_LIMIT = 5.0  # |t| per value
RATIO_RANGE = (0.0, 2.0)  # eye and lip open ratios
ROTATION_TOLERANCE = 1e-2  # R R^T = I within this (max abs entry), det(R) > 0: a rotation, not a mirror or zeros
FPS_RANGE = (Fraction(1, 10), Fraction(1000))


class InvalidTemplateError(ValueError):
    """The template is malformed; the message says where (maps to INVALID_ARGUMENT)."""


@dataclass(frozen=True)
class Template:
    motion: Motion
    fps: Fraction
    origin: str = ""


def fps_to_proto(fps: Fraction) -> pb.FrameRate:
    fps = Fraction(fps).limit_denominator(1_000_000)
    return pb.FrameRate(num=fps.numerator, den=fps.denominator)


def fps_from_proto(rate: pb.FrameRate) -> Fraction:
    if rate.num <= 0 or rate.den <= 0:
        raise InvalidTemplateError(f"invalid frame rate {rate.num}/{rate.den} (frames per second: num/den, both > 0)")
    fps = Fraction(rate.num, rate.den)
    if not FPS_RANGE[0] <= fps <= FPS_RANGE[1]:
        raise InvalidTemplateError(f"frame rate {float(fps):g} is out of range ({float(FPS_RANGE[0]):g} to "
                                   f"{float(FPS_RANGE[1]):g} frames per second)")
    return fps


def to_proto(template: Template) -> pb.MotionTemplate:
    m = template.motion
    frames = []
    for i in range(len(m)):
        frame = pb.MotionFrame(scale=float(m.scale[i]), rotation=m.R[i].reshape(-1).tolist(),
                               exp=m.exp[i].reshape(-1).tolist(), t=m.t[i].reshape(-1).tolist())
        if m.eye_ratio is not None:
            frame.eye_ratio.extend(m.eye_ratio[i].reshape(-1).tolist())
        if m.lip_ratio is not None:
            frame.lip_ratio = float(m.lip_ratio[i])
        frames.append(frame)
    return pb.MotionTemplate(format_version=FORMAT_VERSION, fps=fps_to_proto(template.fps), n_frames=len(frames),
                             frames=frames, origin=template.origin)


def from_proto(message: pb.MotionTemplate, max_frames: int = 100_000) -> Template:
    if message.format_version not in (0, FORMAT_VERSION):
        raise InvalidTemplateError(f"unsupported template format_version {message.format_version}")
    n = len(message.frames)
    if n == 0:
        raise InvalidTemplateError("the motion template has no frames")
    if message.n_frames != n:
        raise InvalidTemplateError(f"the motion template says n_frames={message.n_frames} but holds {n} frames")
    if n > max_frames:
        raise InvalidTemplateError(f"the motion template has {n} frames, more than the limit of {max_frames}")
    fps = fps_from_proto(message.fps)
    sizes = {"rotation": 9, "exp": 63, "t": 3}
    for i, frame in enumerate(message.frames):
        for name, size in sizes.items():
            if len(getattr(frame, name)) != size:
                raise InvalidTemplateError(f"frame {i}: {name} has {len(getattr(frame, name))} values, expected {size}")
        if len(frame.eye_ratio) not in (0, 2):
            raise InvalidTemplateError(f"frame {i}: eye_ratio must have 0 or 2 values")
    frames = message.frames
    has_eyes = all(len(f.eye_ratio) == 2 for f in frames)
    has_lip = all(f.HasField("lip_ratio") for f in frames)
    motion = Motion(
        scale=np.array([f.scale for f in frames], F32),
        R=np.array([f.rotation for f in frames], F32).reshape(n, 3, 3),
        exp=np.array([f.exp for f in frames], F32).reshape(n, 21, 3),
        t=np.array([f.t for f in frames], F32).reshape(n, 3),
        eye_ratio=np.array([f.eye_ratio for f in frames], F32).reshape(n, 2) if has_eyes else None,
        lip_ratio=np.array([f.lip_ratio for f in frames], F32) if has_lip else None,
    )
    check_motion(motion)
    return Template(motion, fps, message.origin)


def check_motion(motion: Motion) -> None:
    """Refuse non-finite and absurd values (``InvalidTemplateError`` naming the first frame, the field, and how many
    values are wrong, never the values themselves: a message stays short whatever the template holds)."""
    n = len(motion)
    fields = {"scale": motion.scale, "rotation": motion.R, "exp": motion.exp, "t": motion.t,
              "eye_ratio": motion.eye_ratio, "lip_ratio": motion.lip_ratio}
    for name, values in fields.items():  # NaN/inf ratios would corrupt the retargeted frames: refused like the rest
        if values is not None:
            _refuse(name, ~np.isfinite(values.reshape(n, -1)), "holds a non-finite value")
    ranges = {"scale": (motion.scale, *SCALE_RANGE), "exp": (motion.exp, -EXP_LIMIT, EXP_LIMIT),
              "t": (motion.t, -T_LIMIT, T_LIMIT), "eye_ratio": (motion.eye_ratio, *RATIO_RANGE),
              "lip_ratio": (motion.lip_ratio, *RATIO_RANGE)}
    for name, (values, low, high) in ranges.items():
        if values is not None:
            values = values.reshape(n, -1)
            _refuse(name, (values < low) | (values > high), f"is out of range [{low:g}, {high:g}]")
    R = motion.R.astype(np.float64)
    deviation = np.abs(R @ R.transpose(0, 2, 1) - np.eye(3)).max(axis=(1, 2))
    bad = (deviation > ROTATION_TOLERANCE) | (np.linalg.det(R) <= 0)
    if bad.any():
        i = int(np.argmax(bad))
        raise InvalidTemplateError(f"frame {i}: rotation is not a rotation matrix (R R^T differs from the identity by "
                                   f"{deviation[i]:.3g}, at most {ROTATION_TOLERANCE:g} allowed; det(R) "
                                   f"{np.linalg.det(R[i]):.3g}, must be 1); {int(bad.sum())} frame(s) affected")


def _refuse(name: str, bad: np.ndarray, what: str) -> None:
    """``bad``: (frames, values) mask; raises naming the first bad frame and counting its bad values."""
    frames = bad.any(axis=1)
    if frames.any():
        i = int(np.argmax(frames))
        raise InvalidTemplateError(f"frame {i}: {name} {what} ({bad_values(bad[i])}); "
                                   f"{int(frames.sum())} frame(s) affected")
