"""Video-to-video without Triton: the official smoother (pykalman, as ``src/utils/filter.py`` calls it) reproduced and
streamed with a few frames of look-ahead, the official keypoint math of a source video, and the upload order of a
source and a driving video."""
from __future__ import annotations

import asyncio

import numpy as np
import pytest
from pykalman import KalmanFilter

from orchestrator.errors import InvalidRequest
from orchestrator.keypoints import (KeypointOptions, LIP_ARRAY, Motion, VideoSourceComposer, rotation_matrix,
                                    transform_keypoints)
from orchestrator.options import animate_options, video_source_options
from orchestrator.smoothing import FixedLagKalman, kalman_lag, kalman_smooth
from orchestrator.uploads import Requests, receive_video
from protos.liveportrait.v1 import portrait_animator_pb2 as pb

VARIANCES = (3e-7, 1e-6, 1e-5, 1e-4)


def track(n: int = 90, dims: int = 72, seed: int = 0) -> np.ndarray:
    """A random walk (the motion) plus noise (the jitter), like keypoint rows of a clip."""
    rng = np.random.default_rng(seed)
    return np.cumsum(rng.normal(0, 0.003, (n, dims)), axis=0) + rng.normal(0, 0.002, (n, dims))


def official_smooth(x: np.ndarray, variance: float) -> np.ndarray:
    kf = KalmanFilter(initial_state_mean=x[0], n_dim_obs=x.shape[1],
                      transition_covariance=1e-5 * np.eye(x.shape[1]),
                      observation_covariance=variance * np.eye(x.shape[1]))
    return kf.smooth(x)[0]


@pytest.mark.parametrize("variance", VARIANCES)
def test_the_whole_clip_smoother_is_the_official_one(variance):
    x = track()
    np.testing.assert_allclose(kalman_smooth(x, variance), official_smooth(x, variance), atol=1e-12)


@pytest.mark.parametrize("variance", VARIANCES)
def test_the_streamed_smoother_matches_the_whole_clip_within_its_tolerance(variance):
    x = track()
    streamed = FixedLagKalman(variance)
    parts = [streamed.push(x[i:i + 8]) for i in range(0, len(x), 8)] + [streamed.flush()]
    out = np.concatenate(parts)
    reference = official_smooth(x, variance)
    assert out.shape == x.shape
    effect = np.abs(reference - x).max()  # how much the smoother moves the values at all
    assert np.abs(out - reference).max() <= 1e-3 * effect


def test_the_streamed_smoother_does_not_depend_on_the_chunking():
    x = track(50)
    results = []
    for size in (1, 7, 50):
        smoother = FixedLagKalman(1e-5)
        results.append(np.concatenate([smoother.push(x[i:i + size]) for i in range(0, 50, size)] + [smoother.flush()]))
    np.testing.assert_array_equal(results[0], results[1])
    np.testing.assert_array_equal(results[0], results[2])


def test_the_look_ahead_grows_with_the_smoothing_and_stays_bounded():
    lags = [kalman_lag(v) for v in (3e-7, 1e-5, 1e-4, 1e-2)]
    assert lags == sorted(lags) and 1 <= lags[0] <= 4 and lags[-1] == 32  # at most 32 frames of delay
    assert kalman_lag(0.0) == 0
    smoother = FixedLagKalman(1e-5)
    assert len(smoother.push(track(3))) == 0 and smoother.pending == 3  # held back until the look-ahead arrives


def test_variance_zero_passes_rows_through():
    x = track(10)
    smoother = FixedLagKalman(0.0)
    np.testing.assert_array_equal(smoother.push(x), x)
    assert len(smoother.flush()) == 0


# ---- the keypoint math of a source video --------------------------------------------------------------------------

def motion(n: int, seed: int, yaw: float = 0.0) -> Motion:
    rng = np.random.default_rng(seed)
    R = rotation_matrix(rng.normal(0, 5, n), yaw + rng.normal(0, 5, n), rng.normal(0, 5, n))
    return Motion(rng.uniform(1.2, 1.6, n).astype(np.float32), R.astype(np.float32),
                  rng.normal(0, 0.02, (n, 21, 3)).astype(np.float32), rng.normal(0, 0.05, (n, 3)).astype(np.float32))


def source_keypoints(source: Motion, kp: np.ndarray) -> np.ndarray:
    return transform_keypoints(kp, source.R, source.exp, source.scale, source.t)


def compose(options: KeypointOptions, source: Motion, driving: Motion, kp: np.ndarray, is_video: bool = True):
    composer = VideoSourceComposer(options, is_video)
    return composer.compose(kp, source, driving, composer.targets(source, driving))


def repeat(m: Motion, n: int) -> Motion:
    return Motion(*(np.repeat(v[:1], n, axis=0) for v in (m.scale, m.R, m.exp, m.t)))


def test_a_driving_video_that_does_not_move_gives_every_source_frame_back():
    source, kp = motion(6, 1), np.random.default_rng(2).normal(0, 0.1, (6, 21, 3)).astype(np.float32)
    still = repeat(motion(1, 3), 6)
    np.testing.assert_allclose(compose(KeypointOptions(), source, still, kp), source_keypoints(source, kp), atol=1e-5)


def test_the_driving_motion_is_applied_relative_to_its_first_frame_on_each_source_frame():
    source, driving = motion(4, 1), motion(4, 5)
    rows = VideoSourceComposer(KeypointOptions(), True).targets(source, driving)
    np.testing.assert_allclose(rows[:, :9].reshape(4, 3, 3), (driving.R @ driving.R[0].T) @ source.R, atol=1e-6)
    np.testing.assert_allclose(rows[:, 9:].reshape(4, 21, 3), source.exp + driving.exp - driving.exp[0], atol=1e-6)


def test_the_expression_region_keeps_each_source_frames_pose():
    source, driving = motion(4, 1), motion(4, 5)
    kp = np.random.default_rng(2).normal(0, 0.1, (4, 21, 3)).astype(np.float32)
    x = compose(KeypointOptions(animation_region="exp"), source, driving, kp)
    own_pose = compose(KeypointOptions(animation_region="exp"), source, repeat(driving, 4), kp)
    moved = compose(KeypointOptions(), source, driving, kp)
    rotation_only = x - own_pose  # the expression change alone: the same rotation on both sides
    assert np.abs(moved - x).max() > 10 * np.abs(rotation_only[:, :, 2]).min()
    np.testing.assert_allclose(x[0], own_pose[0], atol=1e-6)  # frame 0: no motion at all


def test_a_driving_image_keeps_each_source_frames_pose_and_adds_its_expression():
    source, image = motion(3, 1), motion(1, 7)
    rows = VideoSourceComposer(KeypointOptions(), False).targets(source, repeat(image, 3))
    np.testing.assert_allclose(rows[:, :9].reshape(3, 3, 3), source.R, atol=1e-7)
    np.testing.assert_allclose(rows[:, 9:].reshape(3, 21, 3), source.exp + image.exp[0] - LIP_ARRAY, atol=1e-6)


def test_absolute_motion_takes_the_driving_translation():
    no_expression = (lambda m: Motion(m.scale, m.R, np.zeros_like(m.exp), m.t))
    source, driving, kp = no_expression(motion(2, 1)), no_expression(motion(2, 4)), np.zeros((2, 21, 3), np.float32)
    x = compose(KeypointOptions(relative_motion=False), source, driving, kp)
    np.testing.assert_allclose(x[:, 0, :2], driving.t[:, :2], atol=1e-6)  # no keypoints, no expression: only t


# ---- request checks and the upload order --------------------------------------------------------------------------

@pytest.mark.parametrize("setup, refused", [
    (pb.AnimateSetup(driving_keyframes=pb.Keyframes()), "driving_keyframes"),
    (pb.AnimateSetup(options=pb.AnimationOptions(edit=pb.Edit(smile=1))), "options.edit"),
    (pb.AnimateSetup(face_drivings=[pb.FaceDriving(face=1)]), "several faces"),
])
def test_what_a_source_video_cannot_be_combined_with_is_named(setup, refused):
    setup.source_video.size_bytes = 10
    with pytest.raises(InvalidRequest, match=refused):
        video_source_options(animate_options(setup.options, setup.output), setup)


async def _messages(*parts):
    for kind, data in parts:
        yield pb.AnimateRequest(**{kind: data})


def _receive(parts, tmp_path, part):
    requests = Requests(_messages(*parts))

    async def go():
        source = await receive_video(requests, tmp_path / "source", 0, 1000, "source_chunk") if part else None
        driving = await receive_video(requests, tmp_path / "driving", 0, 1000)
        return source, driving

    return asyncio.run(go())


def test_the_source_video_upload_comes_before_the_driving_video(tmp_path):
    sizes = _receive([("source_chunk", b"ab"), ("source_chunk", b"c"), ("driving_chunk", b"xyz"),
                      ("driving_chunk", b"w")], tmp_path, part=True)
    assert sizes == (3, 4)
    assert (tmp_path / "source").read_bytes() == b"abc" and (tmp_path / "driving").read_bytes() == b"xyzw"


def test_source_bytes_after_the_driving_video_are_refused(tmp_path):
    with pytest.raises(InvalidRequest, match="only driving_chunk"):
        _receive([("source_chunk", b"ab"), ("driving_chunk", b"x"), ("source_chunk", b"c")], tmp_path, part=True)
    with pytest.raises(InvalidRequest, match="source video is empty"):
        _receive([("driving_chunk", b"x")], tmp_path, part=True)


def test_the_lip_retargeting_input_takes_one_source_ratio_or_one_per_source_frame():
    from orchestrator.keypoints import combined_lip_ratio

    one = combined_lip_ratio(0.2, np.array([0.1, 0.3]))
    np.testing.assert_array_equal(one, np.array([[0.2, 0.1], [0.2, 0.3]], np.float32))
    per_frame = combined_lip_ratio(np.array([0.2, 0.4], np.float32), np.zeros(2))
    np.testing.assert_array_equal(per_frame, np.array([[0.2, 0.0], [0.4, 0.0]], np.float32))
