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


# ---- the request option, the client, the CLI and the study script (no server) -----------------------------------

def test_the_request_option_is_validated_naming_the_field():
    from orchestrator.errors import InvalidRequest
    from orchestrator.options import animate_options
    from protos.liveportrait.v1 import portrait_animator_pb2 as pb

    def parse(**smoothing):
        return animate_options(pb.AnimationOptions(smoothing=pb.Smoothing(**smoothing)), pb.OutputOptions()).smoothing

    assert animate_options(pb.AnimationOptions(), pb.OutputOptions()).smoothing is None  # off by default
    assert parse() is None and parse(enabled=False, beta=2.0) is None
    assert parse(enabled=True) == SmoothingOptions()  # the defaults, exactly (0.3 arrives as a float32)
    assert parse(enabled=True, min_cutoff_hz=0.5, beta=0.3) == SmoothingOptions(min_cutoff_hz=0.5, beta=0.3)
    assert parse(enabled=True, beta=0) == SmoothingOptions(beta=0.0)
    for field, value, words in (("min_cutoff_hz", 0.0, "> 0"), ("min_cutoff_hz", -1.0, "> 0"),
                                ("min_cutoff_hz", float("inf"), "> 0"), ("beta", -0.1, ">= 0"),
                                ("beta", float("nan"), ">= 0")):
        for enabled in (True, False):  # a bad value is reported even while smoothing is off
            with pytest.raises(InvalidRequest, match=rf"options\.smoothing\.{field} must be .*{words}"):
                parse(enabled=enabled, **{field: value})


def test_keyframes_drive_without_smoothing():
    from orchestrator.options import AnimateOptions
    from orchestrator.service import keyframe_options

    assert keyframe_options(AnimateOptions(smoothing=SmoothingOptions())).smoothing is None


def test_the_client_and_the_cli_send_the_option():
    from client.messages import animation_options
    from client.cli import parser, smoothing_kwarg
    from protos.liveportrait.v1 import portrait_animator_pb2 as pb

    assert not animation_options().HasField("smoothing")
    assert animation_options(smoothing=True).smoothing == pb.Smoothing(enabled=True)
    assert animation_options(smoothing=False).smoothing == pb.Smoothing(enabled=False)
    assert animation_options(smoothing={"min_cutoff_hz": 0.5}).smoothing == pb.Smoothing(enabled=True,
                                                                                          min_cutoff_hz=0.5)
    with pytest.raises(ValueError, match="unknown smoothing"):
        animation_options(smoothing={"cutoff": 1})

    def flags(*extra):
        args = parser().parse_args(["animate", "-s", "a.jpg", "-d", "b.pkl", "-o", "c.mp4", *extra])
        return smoothing_kwarg(args.smooth, args.smooth_min_cutoff, args.smooth_beta)

    assert flags() is None
    assert flags("--no-smooth") == {"enabled": False}
    assert flags("--smooth") == {"min_cutoff_hz": None, "beta": None}
    assert flags("--smooth", "--smooth-min-cutoff", "0.5", "--smooth-beta", "0.1") == {"min_cutoff_hz": 0.5,
                                                                                       "beta": 0.1}
    with pytest.raises(ValueError, match="need --smooth"):
        flags("--smooth-beta", "0.1")


def test_the_study_runs_on_a_few_frames_of_a_real_template(capsys):
    from load_tests import smoothing_study as study

    motion, fps = study.template_motion(study.EXAMPLES / "templates" / "d7.pkl")
    angles = study.head_angles(motion.R)
    assert np.allclose(study.head_angles(rotation_matrix(angles[:, 0], angles[:, 1], angles[:, 2])), angles,
                       atol=1e-3)
    result = study.study(motion[:24], fps, (0, 24), SmoothingOptions(), "d7", step=20.0)
    for group in ("angles", "exp", "t"):
        assert result.jitter_smooth[group] < result.jitter_raw[group]
    assert 1 <= result.step_lag_frames <= 10
    assert study.main(["--template", str(study.EXAMPLES / "templates" / "shake_face.pkl"), "--still", "0:34",
                       "--turn", "30:52"]) == 0
    assert "shake_face.pkl" in capsys.readouterr().out
