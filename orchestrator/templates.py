"""Motion templates on the wire (``liveportrait.v1.MotionTemplate``) <-> ``keypoints.Motion`` arrays.

Only numpy and the generated protobuf code: the client library uses it too. Templates are never pickles here.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from protos.liveportrait.v1 import portrait_animator_pb2 as pb

from .keypoints import Motion

FORMAT_VERSION = 1
F32 = np.float32


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
        raise InvalidTemplateError(f"invalid frame rate {rate.num}/{rate.den}")
    fps = Fraction(rate.num, rate.den)
    if not 0.1 <= fps <= 1000:
        raise InvalidTemplateError(f"frame rate {float(fps):g} is out of range (0.1 to 1000)")
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
    fields = {"scale": motion.scale, "rotation": motion.R, "exp": motion.exp, "t": motion.t,
              "eye_ratio": motion.eye_ratio, "lip_ratio": motion.lip_ratio}
    for name, values in fields.items():  # NaN/inf ratios would corrupt the retargeted frames: refused like the rest
        if values is None:
            continue
        bad = ~np.isfinite(values.reshape(n, -1)).all(axis=1)
        if bad.any():
            i = int(np.argmax(bad))
            raise InvalidTemplateError(f"frame {i}: {name} holds a non-finite value "
                                       f"({', '.join(f'{v:g}' for v in values[i].reshape(-1))}); "
                                       f"{int(bad.sum())} frame(s) affected")
    if (motion.scale <= 0).any():
        raise InvalidTemplateError("the motion template has a non-positive scale")
    return Template(motion, fps, message.origin)
