"""DDIM sampling with classifier-free guidance (Ditto ``LMDM.py``: ``setup``, ``ddim_sample``).

Cosine schedule over 1000 diffusion steps (s = 0.008, betas clipped at 0.999, float32 as the official buffers);
``steps`` sampling steps at ``linspace(-1, 999, steps + 1)`` truncated to integers (torch's float32 linspace);
eta = 1. Per step, the denoiser predicts the clean motion unconditionally and conditionally,
``x0 = uncond + w (cond - uncond)`` (w = 2), ``eps = x_t / sqrt(1 - a_t) - x0 / sqrt(1 / a_t - 1)`` and
``x_next = x0 sqrt(a_next) + c eps + sigma noise`` with ``sigma = sqrt((1 - a_t/a_next)(1 - a_next)/(1 - a_t))``,
``c = sqrt(1 - a_next - sigma^2)``; the last step returns ``x0``.

As the official code, the per-step noise is drawn once per sampler and reused for every window; each window draws
its own starting noise ``x_T``. ``Noise`` injects both (the golden tests) or draws them from a seed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

F32 = np.float32
TRAIN_STEPS = 1000
GUIDANCE = 2.0

# (x_t, kp_cond, cond, t) -> (unconditional x0, conditional x0); shapes (1, L, 265), (1, 265), (1, L, 1103), (1,)
Denoiser = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
# called per step: (step index, x_t, uncond, cond, x0, eps)
StepObserver = Callable[[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray], None]


def cosine_alphas_cumprod(n: int = TRAIN_STEPS, s: float = 8e-3) -> np.ndarray:
    """(n,) cumulative products of alphas of the cosine schedule (float64 betas, float32 products)."""
    steps = np.arange(n + 1, dtype=np.float64) / n + s
    alphas = np.cos(steps / (1 + s) * np.pi / 2) ** 2
    alphas = alphas / alphas[0]
    betas = np.clip(1 - alphas[1:] / alphas[:-1], 0, 0.999).astype(F32)
    return np.cumprod(F32(1) - betas, dtype=F32)


def _linspace_f32(start: float, end: float, steps: int) -> np.ndarray:
    """torch.linspace in float32: the first half counts up from ``start``, the second down from ``end``."""
    step = (F32(end) - F32(start)) / F32(steps - 1)
    i = np.arange(steps)
    up = F32(start) + step * i.astype(F32)
    down = F32(end) - step * (steps - 1 - i).astype(F32)
    return np.where(i < steps // 2, up, down).astype(F32)


@dataclass(frozen=True)
class DdimSchedule:
    times: np.ndarray  # (steps,) int64 diffusion step of each sampling step, 999 first
    next_times: np.ndarray  # (steps,) the step after (-1 for the last)
    alpha_next_sqrt: np.ndarray  # (steps - 1,) float32
    sigma: np.ndarray  # (steps - 1,)
    c: np.ndarray  # (steps - 1,)
    alphas_cumprod: np.ndarray = field(repr=False)  # (1000,)

    @property
    def steps(self) -> int:
        return len(self.times)


def ddim_schedule(steps: int, eta: float = 1.0) -> DdimSchedule:
    if not 1 <= steps <= TRAIN_STEPS:
        raise ValueError(f"sampling steps must be 1 to {TRAIN_STEPS}")
    acp = cosine_alphas_cumprod()
    times = _linspace_f32(-1, TRAIN_STEPS - 1, steps + 1).astype(np.int32).astype(np.int64)[::-1]
    now, nxt = times[:-1], times[1:]
    a, a_next = acp[now[:-1]], acp[nxt[:-1]]
    sigma = (F32(eta) * np.sqrt((1 - a / a_next) * (1 - a_next) / (1 - a))).astype(F32)
    c = np.sqrt(np.maximum(1 - a_next - sigma ** 2, 0)).astype(F32)  # rounding can leave -1e-8 (official: NaN)
    return DdimSchedule(now.copy(), nxt.copy(), np.sqrt(a_next).astype(F32), sigma, c, acp)


@dataclass
class Noise:
    """The sampler's noise: ``step`` (steps - 1, 1, L, D) reused for every window; ``initial(i)`` = x_T of window i."""

    step: np.ndarray
    initial: Callable[[int], np.ndarray]

    @classmethod
    def seeded(cls, seed: int, steps: int, shape: tuple[int, ...]) -> "Noise":
        rng = np.random.default_rng(seed)
        step = rng.standard_normal((steps - 1, 1, *shape), dtype=F32)
        return cls(step, lambda _i: rng.standard_normal((1, *shape), dtype=F32))

    @classmethod
    def fixed(cls, step: np.ndarray, initial: np.ndarray) -> "Noise":
        """Recorded noise: ``initial`` (windows, 1, L, D)."""
        return cls(np.asarray(step, F32), lambda i: np.asarray(initial[i], F32))


class DdimSampler:
    def __init__(self, denoise: Denoiser, schedule: DdimSchedule, noise: Noise, guidance: float = GUIDANCE):
        if len(noise.step) != schedule.steps - 1:
            raise ValueError(f"step noise for {len(noise.step) + 1} steps, schedule has {schedule.steps}")
        self.denoise = denoise
        self.schedule = schedule
        self.noise = noise
        self.guidance = F32(guidance)
        acp = schedule.alphas_cumprod
        self._recip_sqrt_1m = np.sqrt(F32(1) / (F32(1) - acp)).astype(F32)
        self._sqrt_recip_m1 = np.sqrt(F32(1) / acp - F32(1)).astype(F32)
        self.windows = 0

    def sample(self, kp_cond: np.ndarray, cond: np.ndarray, observe: StepObserver | None = None) -> np.ndarray:
        """One window: kp_cond (1, D) motion of its first frame, cond (1, L, 1103) -> x0 (1, L, D)."""
        s = self.schedule
        x = self.noise.initial(self.windows)
        self.windows += 1
        x0 = x
        for i, (t, t_next) in enumerate(zip(s.times, s.next_times)):
            uncond, conditioned = self.denoise(x, kp_cond, cond, np.array([t], np.int64))
            x0 = (uncond + (conditioned - uncond) * self.guidance).astype(F32)
            eps = (self._recip_sqrt_1m[t] * x - x0 / self._sqrt_recip_m1[t]).astype(F32)
            if observe is not None:
                observe(i, x, uncond, conditioned, x0, eps)
            if t_next < 0:
                break
            x = (x0 * s.alpha_next_sqrt[i] + s.c[i] * eps + s.sigma[i] * self.noise.step[i]).astype(F32)
        return x0
