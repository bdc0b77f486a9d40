"""Steady motion (orchestrator/smoothing.py): a causal One-Euro filter steadies a still head's jitter, follows a head
turn with a bounded lag, works chunk by chunk exactly as on the whole clip, and keeps rotations rotations."""
from __future__ import annotations

import numpy as np
import pytest

from orchestrator.keypoints import Motion, rotation_matrix
from orchestrator.smoothing import MotionSmoother, SmoothingOptions

FPS = 25.0


def track(yaw_degrees: np.ndarray, noise: float, seed: int = 0) -> Motion:
    """A head whose yaw follows ``yaw_degrees`` with Gaussian jitter (degrees) on every angle and on expression."""
    n = len(yaw_degrees)
    rng = np.random.default_rng(seed)
    pitch, roll = rng.normal(0, noise, n), rng.normal(0, noise, n)
    yaw = yaw_degrees + rng.normal(0, noise, n)
    exp = rng.normal(0, 0.002 * noise, (n, 21, 3)) + 0.01
    return Motion(scale=np.full(n, 1.5, np.float32) + rng.normal(0, 0.001 * noise, n).astype(np.float32),
                  R=rotation_matrix(pitch, yaw, roll).astype(np.float32), exp=exp.astype(np.float32),
                  t=rng.normal(0, 0.001 * noise, (n, 3)).astype(np.float32),
                  eye_ratio=np.full((n, 2), 0.3, np.float32), lip_ratio=np.full(n, 0.1, np.float32))


def yaw_of(motion: Motion) -> np.ndarray:
    """Yaw in degrees back from the rotation matrices (R = Ry(yaw)^T when pitch and roll are near zero)."""
    return np.degrees(np.arctan2(motion.R[:, 2, 0], motion.R[:, 0, 0]))


def jitter(values: np.ndarray) -> float:
    return float(np.std(np.diff(values, axis=0)))


def test_a_still_heads_jitter_is_steadied():
    raw = track(np.zeros(100), noise=0.5)
    smooth = MotionSmoother(FPS)(raw)
    assert jitter(yaw_of(smooth)) < jitter(yaw_of(raw)) / 4
    assert jitter(smooth.exp.reshape(100, -1)) < jitter(raw.exp.reshape(100, -1)) / 4
    assert jitter(smooth.t) < jitter(raw.t) / 4


def test_a_head_turn_is_followed_with_a_bounded_lag():
    turn = np.concatenate([np.zeros(10), np.linspace(0, 30, 13), np.full(40, 30.0)])  # 30 degrees in 0.5 s
    raw, smooth = track(turn, noise=0.0), MotionSmoother(FPS)(track(turn, noise=0.0))
    assert np.allclose(yaw_of(raw)[-1], 30, atol=1e-3)
    lag_frames = int(np.argmax(yaw_of(smooth) >= 27)) - int(np.argmax(yaw_of(raw) >= 27))  # 90% of the turn
    assert 0 <= lag_frames <= 3  # at most 120 ms at 25 fps
    assert abs(yaw_of(smooth)[-1] - 30) < 0.5


def test_chunks_give_exactly_what_the_whole_clip_gives_and_rotations_stay_rotations():
    raw = track(np.linspace(-20, 20, 40), noise=0.3, seed=3)
    whole = MotionSmoother(FPS)(raw)
    streaming = MotionSmoother(FPS)
    parts = [streaming(raw[i:i + 8]) for i in range(0, 40, 8)]
    for field in ("scale", "R", "exp", "t", "eye_ratio", "lip_ratio"):
        assert np.array_equal(np.concatenate([getattr(p, field) for p in parts]), getattr(whole, field))
    identity = np.einsum("nij,nkj->nik", whole.R, whole.R)
    assert np.allclose(identity, np.eye(3), atol=1e-5) and np.allclose(np.linalg.det(whole.R), 1, atol=1e-5)


def test_the_first_frame_passes_unchanged_and_bad_settings_are_refused():
    raw = track(np.zeros(3), noise=0.5)
    assert np.allclose(MotionSmoother(FPS)(raw[:1]).R, raw.R[:1], atol=1e-6)
    with pytest.raises(ValueError, match="min_cutoff_hz"):
        SmoothingOptions(min_cutoff_hz=0)
    with pytest.raises(ValueError, match="beta"):
        SmoothingOptions(beta=float("nan"))
