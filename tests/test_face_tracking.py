"""Streaming driving-video cropping and eye/lip ratios: the blink in d0.mp4, forced crop, tracking and smoothing."""
from __future__ import annotations

import asyncio
from pathlib import Path

import av
import numpy as np
import pytest

from export_scripts.face_models.cache import cached_face_models
from orchestrator.face import FaceAnalyzer, OnnxFaceModelRunner
from orchestrator.face.tracking import DrivingCropTracker, TrackerConfig, should_crop

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="module")
def analyzer():
    return FaceAnalyzer(OnnxFaceModelRunner(cached_face_models()))


def frames(path: Path, limit: int | None = None) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        out = []
        for frame in container.decode(video=0):
            out.append(frame.to_ndarray(format="rgb24"))
            if limit and len(out) == limit:
                break
    return out


def run(tracker, video):
    async def go():
        return [await tracker.process(f) for f in video]
    return asyncio.run(go())


@pytest.fixture(scope="module")
def d0():
    return frames(SHARED / "examples" / "driving" / "d0.mp4")


def test_blink_dips_the_eye_ratio(analyzer, d0):
    results = run(DrivingCropTracker(analyzer), d0)
    assert all(r.face_found for r in results)
    assert sum(r.redetected for r in results) == 1  # detected once, then tracked
    eyes = np.array([np.mean(r.eye_ratio) for r in results])
    open_level = np.median(eyes)
    blink = int(eyes.argmin())
    assert 0.2 < open_level < 0.6  # the open-eye level of LivePortrait's ratios
    assert eyes[blink] < 0.35 * open_level  # a clear dip ...
    assert 0 < blink < len(eyes) - 1 and eyes[blink - 3] > 0.6 * open_level  # ... that is a blink, not a drift
    assert (eyes > 0.6 * open_level).mean() > 0.85  # eyes open most of the time


def test_square_video_is_not_cropped_unless_asked():
    assert not should_crop((512, 512, 3), None)
    assert should_crop((512, 512, 3), True)
    assert should_crop((720, 1280, 3), None) and should_crop((720, 1280, 3), False)  # forced: not square


def test_non_square_video_is_cropped_and_the_box_is_smooth(analyzer, d0):
    # a non-square clip: the square video padded on the right, with the face drifting 3 px per frame
    clip = []
    for i, f in enumerate(d0[:30]):
        canvas = np.zeros((f.shape[0], f.shape[1] + 200, 3), np.uint8)
        canvas[:, 3 * i:3 * i + f.shape[1]] = f
        clip.append(canvas)
    results = run(DrivingCropTracker(analyzer), clip)
    assert all(r.image_256 is not None and r.image_256.shape == (256, 256, 3) for r in results)
    boxes = np.array([r.box for r in results])
    centres = (boxes[:, 0] + boxes[:, 2]) / 2
    assert 0.5 * 3 * 29 < centres[-1] - centres[0] < 1.5 * 3 * 29  # the crop follows the face
    steps = np.abs(np.diff(boxes, axis=0))
    assert steps.max() < 12  # no jumps frame to frame


def test_frames_before_the_first_face_have_no_crop_then_tracking_starts(analyzer, d0):
    blank = np.zeros((d0[0].shape[0], d0[0].shape[1] + 100, 3), np.uint8)
    clip = [blank, blank] + [np.concatenate([f, blank[:, :100]], axis=1) for f in d0[:3]]
    results = run(DrivingCropTracker(analyzer, TrackerConfig()), clip)
    assert [r.image_256 is None for r in results] == [True, True, False, False, False]
    assert [r.redetected for r in results] == [True, True, True, False, False]


def test_lost_face_keeps_the_last_box_and_is_redetected(analyzer, d0):
    wide = [np.concatenate([f, np.zeros_like(f[:, :100])], axis=1) for f in d0[:3]]
    clip = wide[:2] + [np.zeros_like(wide[0])] + wide[2:]
    results = run(DrivingCropTracker(analyzer), clip)
    assert not results[2].face_found and results[2].image_256 is not None
    np.testing.assert_allclose(results[2].box, results[1].box)
    assert results[3].face_found and results[3].redetected


def test_a_phone_video_stored_sideways_is_tracked_upright(analyzer, d0, tmp_path):
    """Phones store portrait videos sideways plus a display rotation; the driving crops must show the face upright
    (the official driving crop does not rotate, so a sideways face would drive a 90-degree head roll)."""
    from orchestrator.face.mesh_layout import EYE_IMAGE_LEFT, EYE_IMAGE_RIGHT
    from orchestrator.media import read_frames

    path = tmp_path / "phone.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.height, stream.width = d0[0].shape[1], d0[0].shape[0]  # stored turned: sides swapped
        stream.pix_fmt = "yuv420p"
        stream.set_display_rotation(-90)  # shown turned 90 degrees clockwise
        for image in d0[:6]:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(np.rot90(image, 1)), format="rgb24")))
        out.mux(stream.encode(None))
    (decoded,) = list(read_frames(path, chunk=8, max_frames=10))
    tracked = run(DrivingCropTracker(analyzer, TrackerConfig(crop=True)), decoded)
    for result in tracked:
        lm = result.landmarks
        left, right = lm[EYE_IMAGE_LEFT["outer"]], lm[EYE_IMAGE_RIGHT["outer"]]
        dx, dy = right - left
        assert dx > 0 and abs(dy) < 0.2 * dx, "eyes side by side: the face is upright"
