"""Steady motion: a causal One-Euro filter over driving motion, usable on a stream (state kept between chunks).

Raw driving keypoints jitter (a still head wobbles by a fraction of a degree from frame to frame) and the official
pipeline uses them as they are. The One-Euro filter (Casiez, Roussel, Vogel, CHI 2012) is a low-pass filter whose
cut-off rises with the signal's speed: strong smoothing while the head is still, little lag while it moves. It only
looks at past frames, so it works frame by frame in a live stream and chunk by chunk in a video.

Per scalar signal x sampled every dt seconds::

    alpha(fc) = 1 / (1 + 1 / (2 pi fc dt))
    dx  = lowpass((x - x_prev_hat) / dt, alpha(d_cutoff))        # smoothed speed
    x_hat = lowpass(x, alpha(min_cutoff + beta * |dx|))

Every motion value is filtered this way: scale, the 9 rotation entries (re-orthonormalised afterwards, so the result
stays a rotation), the 63 expression values, translation and the eye/lip ratios. Off by default: the golden
pipeline uses raw motion.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .keypoints import Motion

F32 = np.float32


@dataclass(frozen=True)
class SmoothingOptions:
    min_cutoff_hz: float = 1.0  # smoothing of a still head: lower = steadier
    beta: float = 0.3  # how fast the cut-off rises with speed: higher = less lag in fast moves
    d_cutoff_hz: float = 1.0  # smoothing of the speed estimate

    def __post_init__(self):
        for name in ("min_cutoff_hz", "beta", "d_cutoff_hz"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0 or (name != "beta" and value == 0):
                raise ValueError(f"smoothing {name} must be a finite number {'>= 0' if name == 'beta' else '> 0'}, "
                                 f"got {value}")


class OneEuro:
    """One-Euro filter over a vector of independent signals sampled at a fixed rate."""

    def __init__(self, fps: float, options: SmoothingOptions = SmoothingOptions()):
        self.dt = 1.0 / float(fps)
        self.options = options
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None

    def _alpha(self, cutoff):
        return 1.0 / (1.0 + 1.0 / (2 * math.pi * cutoff * self.dt))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float64)
        if self._x is None:
            self._x, self._dx = x, np.zeros_like(x)
            return x
        a_d = self._alpha(self.options.d_cutoff_hz)
        self._dx = a_d * (x - self._x) / self.dt + (1 - a_d) * self._dx
        a = self._alpha(self.options.min_cutoff_hz + self.options.beta * np.abs(self._dx))
        self._x = a * x + (1 - a) * self._x
        return self._x


def nearest_rotation(m: np.ndarray) -> np.ndarray:
    """The rotation matrices closest to ``m`` [N, 3, 3] (SVD; determinant +1)."""
    u, _, vt = np.linalg.svd(m)
    d = np.sign(np.linalg.det(u @ vt))
    u[:, :, -1] *= d[:, None]
    return u @ vt


class MotionSmoother:
    """Causal smoothing of a motion stream: call it on consecutive chunks (or single frames) of one request."""

    def __init__(self, fps: float, options: SmoothingOptions = SmoothingOptions()):
        self.filter = OneEuro(fps, options)

    def __call__(self, motion: Motion) -> Motion:
        n = len(motion)
        parts = [motion.scale.reshape(n, 1), motion.R.reshape(n, 9), motion.exp.reshape(n, 63), motion.t]
        for ratio in (motion.eye_ratio, motion.lip_ratio):
            if ratio is not None:
                parts.append(ratio.reshape(n, -1))
        rows = np.concatenate(parts, axis=1)
        out = np.stack([self.filter(row) for row in rows]) if n else rows
        scale, rotation, exp, t = out[:, 0], out[:, 1:10], out[:, 10:73], out[:, 73:76]
        rest = out[:, 76:]
        eye = lip = None
        if motion.eye_ratio is not None:
            eye, rest = rest[:, :2], rest[:, 2:]
        if motion.lip_ratio is not None:
            lip = rest[:, 0]
        return Motion(scale.astype(F32), nearest_rotation(rotation.reshape(n, 3, 3)).astype(F32),
                      exp.reshape(n, 21, 3).astype(F32), t.astype(F32),
                      None if eye is None else eye.astype(F32), None if lip is None else lip.astype(F32))
