"""A motion template generated in code for the demo: a head turning left and right, a nod, and a blink.

Head pose is what the template's rotation carries (relative motion moves the source's head by the change from the
first frame); the blink closes the eye keypoints in the expression offsets and is also written as eye-open ratios
(used with eye retargeting).
"""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from protos.liveportrait.v1 import portrait_animator_pb2 as pb

EYE_KEYPOINTS = (11, 13, 15, 16, 18)


def rotation(pitch: float, yaw: float, roll: float) -> np.ndarray:
    """LivePortrait's convention (degrees): (Rz(roll) Ry(yaw) Rx(pitch))^T."""
    x, y, z = (math.radians(a) for a in (pitch, yaw, roll))
    rx = np.array([[1, 0, 0], [0, math.cos(x), -math.sin(x)], [0, math.sin(x), math.cos(x)]])
    ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rz = np.array([[math.cos(z), -math.sin(z), 0], [math.sin(z), math.cos(z), 0], [0, 0, 1]])
    return (rz @ ry @ rx).T


def demo_template(frames: int = 50, fps: Fraction = Fraction(25), yaw_deg: float = 15.0,
                  pitch_deg: float = 6.0) -> pb.MotionTemplate:
    out = []
    for i in range(frames):
        phase = 2 * math.pi * i / frames
        yaw, pitch = yaw_deg * math.sin(phase), pitch_deg * math.sin(2 * phase) / 2
        blink = math.exp(-((i - 0.7 * frames) / max(frames / 25, 1.0)) ** 2)  # 0 open .. 1 closed
        exp = np.zeros((21, 3))
        exp[list(EYE_KEYPOINTS), 1] = 0.02 * blink  # lids move down (y grows downwards in keypoint space)
        eye = 0.35 * (1 - blink)
        out.append(pb.MotionFrame(scale=1.5, rotation=rotation(pitch, yaw, 0.0).reshape(-1).tolist(),
                                  exp=exp.reshape(-1).tolist(), t=[0.0, 0.0, 0.0], eye_ratio=[eye, eye],
                                  lip_ratio=0.0))
    return pb.MotionTemplate(format_version=1, fps=pb.FrameRate(num=fps.numerator, den=fps.denominator),
                             n_frames=frames, frames=out, origin="liveportrait demo motion (generated)")
