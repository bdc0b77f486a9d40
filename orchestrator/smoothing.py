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

    def __call__(self, motion: Motion, dt: float | None = None) -> Motion:
        """The chunk steadied; ``dt``: seconds since the previous frame when frames are not evenly spaced (a live
        stream's capture times), else one frame at the fps."""
        if dt is not None:
            self.filter.dt = dt
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


# ---- the official source-video smoother, streamed ---------------------------------------------------------------
#
# Official ``src/utils/filter.py smooth``: pykalman's ``KalmanFilter(initial_state_mean=x_0, transition_covariance=
# q I, observation_covariance=r I).smooth(x)`` over the whole clip (identity transition and observation, initial
# covariance I; q = 1e-5, r = ``driving_smooth_observation_variance``, default 3e-7). Every covariance is a multiple of
# I, so the filter runs on one scalar variance for all dimensions. The Rauch-Tung-Striebel backward pass makes frame i
# depend on every later frame, but with gain g = P / (P + q) < 1 per step: frames more than L steps ahead weigh less
# than g**L. ``FixedLagKalman`` smooths frame i once frame i + L has arrived, with L the smallest lag for which
# g**L <= ``tolerance`` (3 frames at the default variance), so a server streams the clip with a few frames of delay.

PROCESS_VARIANCE = 1e-5  # official default


def _filtered_variances(n: int, q: float, r: float) -> np.ndarray:
    """P_t of the forward filter (data-independent): the first step predicts with the initial covariance 1."""
    p = np.empty(n)
    predicted = 1.0
    for i in range(n):
        p[i] = predicted * r / (predicted + r)
        predicted = p[i] + q
    return p


def kalman_smooth(x: np.ndarray, observation_variance: float, process_variance: float = PROCESS_VARIANCE) -> np.ndarray:
    """The official whole-clip smoother (the reference): rows of ``x`` [N, D] -> smoothed rows (float64)."""
    x = np.asarray(x, np.float64)
    n = len(x)
    if n == 0:
        return x.copy()
    q, r = process_variance, observation_variance
    p = _filtered_variances(n, q, r)
    means = np.empty_like(x)
    mean = x[0]
    for i in range(n):
        predicted = 1.0 if i == 0 else p[i - 1] + q
        mean = mean + predicted / (predicted + r) * (x[i] - mean)
        means[i] = mean
    smoothed = means.copy()
    for i in range(n - 2, -1, -1):
        smoothed[i] = means[i] + p[i] / (p[i] + q) * (smoothed[i + 1] - means[i])
    return smoothed


def kalman_lag(observation_variance: float, process_variance: float = PROCESS_VARIANCE, tolerance: float = 1e-4,
               max_lag: int = 32) -> int:
    """Frames of look-ahead for which the dropped tail weighs at most ``tolerance`` (steady-state gain ** lag)."""
    if observation_variance <= 0:
        return 0
    p = _filtered_variances(200, process_variance, observation_variance)[-1]
    gain = p / (p + process_variance)
    if gain <= tolerance:
        return 1
    return int(min(max_lag, math.ceil(math.log(tolerance) / math.log(gain))))


class FixedLagKalman:
    """``kalman_smooth`` on a stream: ``push`` rows as they come, get back the rows that are final (each row once
    ``lag`` later rows are known), ``flush`` at the end. ``lag`` 0 (variance 0) passes rows through unchanged."""

    def __init__(self, observation_variance: float, process_variance: float = PROCESS_VARIANCE,
                 tolerance: float = 1e-4, max_lag: int = 32):
        self.q, self.r = process_variance, observation_variance
        self.lag = kalman_lag(observation_variance, process_variance, tolerance, max_lag)
        self._means: list[np.ndarray] = []  # filtered means not yet emitted (plus the look-ahead)
        self._vars: list[float] = []
        self._mean: np.ndarray | None = None
        self._predicted = 1.0

    @property
    def pending(self) -> int:
        """Rows pushed and not yet returned."""
        return len(self._means)

    def push(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, np.float64)
        if self.lag == 0:
            return rows
        for row in rows:
            self._mean = row if self._mean is None else self._mean
            gain = self._predicted / (self._predicted + self.r)
            self._mean = self._mean + gain * (row - self._mean)
            variance = self._predicted * (1 - gain)
            self._means.append(self._mean)
            self._vars.append(variance)
            self._predicted = variance + self.q
        ready = max(0, len(self._means) - self.lag)
        return self._emit(ready)

    def flush(self) -> np.ndarray:
        return self._emit(len(self._means))

    def _emit(self, count: int) -> np.ndarray:
        """The first ``count`` pending rows, each smoothed backwards from ``lag`` rows ahead (or the last row)."""
        if count == 0:
            width = 0 if self._mean is None else self._mean.shape[0]
            return np.empty((0, width))
        out = []
        for k in range(count):
            end = min(k + self.lag, len(self._means) - 1)
            smoothed = self._means[end]
            for i in range(end - 1, k - 1, -1):  # Rauch-Tung-Striebel over the look-ahead window
                p = self._vars[i]
                smoothed = self._means[i] + p / (p + self.q) * (smoothed - self._means[i])
            out.append(smoothed)
        del self._means[:count], self._vars[:count]
        return np.stack(out)
