"""Video-to-video through the real tritonserver (tiny profile): a source video re-acted by a driving video, image or
template. Output length, frame rate, size and audio policy; the first frame is the source frame's own reconstruction;
memory stays flat for a long source; a source without a face is refused naming it."""
from __future__ import annotations

from pathlib import Path

import av
import cv2
import grpc
import numpy as np
import pytest

from client.api import PortraitClient
from load_tests import scenarios
from orchestrator.embedded import OrchestratorProcess

from video_checks import clip, inspect

EXAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "examples"
BUILD = Path(__file__).resolve().parents[1] / "build" / "test"
SOURCE_VIDEO = EXAMPLES / "source" / "s13.mp4"  # 720x1080, 25 fps, with audio

pytestmark = pytest.mark.triton


@pytest.fixture(scope="module")
def server(triton_server):
    with OrchestratorProcess(triton_server.grpc_url, BUILD / "orchestrator-v2v.log") as process:
        yield process


@pytest.fixture(scope="module")
def client(server):
    with PortraitClient(server.target) as c:
        yield c


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    return clip(SOURCE_VIDEO, tmp_path_factory.mktemp("v2v") / "s13-12.mp4", frames=12)


def test_a_driving_video_reacts_the_source_video_for_the_shorter_length(client, source, tmp_path):
    driving = clip(EXAMPLES / "driving" / "d0.mp4", tmp_path / "d0-9.mp4", frames=9)  # 25 fps, no audio
    summary = client.animate(source, driving, tmp_path / "out.mp4")
    out = inspect(tmp_path / "out.mp4")
    assert out["frames"] == summary.frames == 9  # min(12 source frames, 9 driving frames)
    assert out["size"] == (720, 1080) == (summary.width, summary.height)  # pasted back into the source frames
    assert out["rate"] == 25 and out["audio"] and summary.has_audio  # fps and audio from the source
    assert summary.source_frames >= 9
    # the animated face, as the proto promises: its detector box in the source's first frame (issue 17)
    with av.open(str(source)) as container:
        first = next(container.decode(video=0)).to_ndarray(format="rgb24")
    ok, png = cv2.imencode(".png", cv2.cvtColor(first, cv2.COLOR_RGB2BGR))
    detected = client.detect(png.tobytes()).faces[0].box
    np.testing.assert_allclose(summary.source_face_box, detected, atol=0.5)
    assert [(f.index, f.driving) for f in summary.faces] == [(0, "main")]
    np.testing.assert_allclose(summary.faces[0].box, detected, atol=0.5)


def test_fps_and_audio_can_come_from_the_driving_video(client, source, tmp_path):
    driving = clip(EXAMPLES / "driving" / "d3.mp4", tmp_path / "d3-20.mp4", frames=20)  # 30 fps, with audio
    summary = client.animate(source, driving, tmp_path / "out.mp4", fps_and_audio_from_driving=True)
    out = inspect(tmp_path / "out.mp4")
    assert out["frames"] == summary.frames == 12  # the source is the shorter one now
    assert out["rate"] == 30 and out["audio"]


def test_a_source_video_without_audio_takes_the_driving_audio(client, tmp_path):
    silent = clip(SOURCE_VIDEO, tmp_path / "silent.mp4", frames=6, audio=False)
    driving = clip(EXAMPLES / "driving" / "d3.mp4", tmp_path / "d3-10.mp4", frames=10)
    summary = client.animate(silent, driving, tmp_path / "out.mp4")
    assert summary.frames == 6 and summary.has_audio and inspect(tmp_path / "out.mp4")["rate"] == 25


def test_a_template_or_an_image_drives_a_source_video(client, source, tmp_path):
    template = scenarios.short_template(EXAMPLES / "templates" / "d7.pkl", 5)
    assert client.animate(source, template, tmp_path / "t.mp4").frames == 5
    # one driving frame drives every source frame (official: the output has the source's length)
    summary = client.animate(source, EXAMPLES / "driving" / "d9.jpg", tmp_path / "i.mp4")
    assert summary.frames == inspect(tmp_path / "i.mp4")["frames"] == 12


def test_the_first_frame_is_the_source_frames_own_reconstruction(client, source, tmp_path):
    """With relative motion the first driving frame moves nothing: frame 0 of a source video is what the same frame,
    as a still portrait, gives with the same driving video (whose first frame is its own reference too)."""
    with av.open(str(source)) as c:
        first = next(c.decode(video=0)).to_ndarray(format="rgb24")
    still = tmp_path / "frame0.png"
    cv2.imwrite(str(still), cv2.cvtColor(first, cv2.COLOR_RGB2BGR))
    driving = clip(EXAMPLES / "driving" / "d0.mp4", tmp_path / "d0-8.mp4", frames=8)
    client.animate(source, driving, tmp_path / "v2v.mp4", source_video_smoothing=0.0)
    client.animate(still, driving, tmp_path / "image.mp4")
    v2v, image = _frames(tmp_path / "v2v.mp4"), _frames(tmp_path / "image.mp4")
    assert np.abs(v2v[0] - image[0]).mean() < 1.0  # the same frame, up to the encoder
    assert np.abs(v2v[0] - first).mean() > 1.0  # ... and really re-rendered (synthetic weights)
    assert np.abs(v2v[7] - image[7]).mean() > 1.0  # later frames follow their own source frames


def test_the_official_smoothing_changes_the_motion_only_slightly(client, source, tmp_path):
    """The smoother holds frames back for its look-ahead (3 frames at the default, 32 at 1e-3) and releases them all
    at the end: every frame comes out, rendered a chunk at a time."""
    driving = clip(EXAMPLES / "driving" / "d0.mp4", tmp_path / "d0-12.mp4", frames=12)
    # lossless (crf 0): the encoder's own noise at crf 18 (~0.4 levels) would hide these differences
    client.animate(source, driving, tmp_path / "raw.mp4", source_video_smoothing=0.0, crf=0)
    client.animate(source, driving, tmp_path / "smooth.mp4", crf=0)  # the official default variance 3e-7
    client.animate(source, driving, tmp_path / "heavy.mp4", source_video_smoothing=1e-3, crf=0)
    raw, smooth, heavy = (_frames(tmp_path / f"{n}.mp4") for n in ("raw", "smooth", "heavy"))
    assert len(raw) == len(smooth) == len(heavy) == 12
    light = np.mean([np.abs(a - b).mean() for a, b in zip(raw, smooth)])
    strong = np.mean([np.abs(a - b).mean() for a, b in zip(raw, heavy)])
    assert 0 < light < strong


def test_memory_stays_flat_for_a_long_source_video(client, server, tmp_path):
    """The source video is decoded, cropped and pasted back chunk by chunk: a source five times longer does not raise
    the orchestrator's peak memory by its frames (96 more frames of 720x1080 RGB would be 220 MB; the first run warms
    the worker threads up)."""
    short = _looped(SOURCE_VIDEO, tmp_path / "short.mp4", 24)
    long = _looped(SOURCE_VIDEO, tmp_path / "long.mp4", 120)
    image = EXAMPLES / "driving" / "d9.jpg"
    assert client.animate(short, image, tmp_path / "short-out.mp4").frames == 24
    peak_short = _peak_rss_mb(server)
    assert client.animate(long, image, tmp_path / "long-out.mp4").frames == 120
    assert _peak_rss_mb(server) - peak_short < 110


def test_a_source_video_without_a_face_is_refused_naming_it(client, tmp_path):
    blank = tmp_path / "blank.mp4"
    with av.open(str(blank), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        for i in range(6):
            frame = np.full((240, 320, 3), 40 + 20 * i, np.uint8)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode(None))
    with pytest.raises(grpc.RpcError) as error:
        client.animate(blank, EXAMPLES / "driving" / "d0.mp4", tmp_path / "out.mp4")
    assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "source video" in error.value.details() and "face" in error.value.details()
    assert not (tmp_path / "out.mp4").exists()
    assert client.health() == "SERVING"


def test_a_source_video_with_keyframes_is_invalid(client, source, tmp_path):
    with pytest.raises(grpc.RpcError) as error:
        client.animate(source, None, tmp_path / "out.mp4", keyframes=[{"edit": {"smile": 1}, "duration_s": 1}])
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "source video" in error.value.details() and "keyframes" in error.value.details()


def _frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24").astype(np.float32) for f in c.decode(video=0)]


def _looped(source: Path, destination: Path, frames: int) -> Path:
    """``frames`` frames of ``source`` played forwards and backwards (a long clip from a short one)."""
    with av.open(str(source)) as c:
        images = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    cycle = images + images[::-1]
    with av.open(str(destination), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = images[0].shape[1], images[0].shape[0], "yuv420p"
        for i in range(frames):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(cycle[i % len(cycle)], format="rgb24")))
        out.mux(stream.encode(None))
    return destination


def _peak_rss_mb(server) -> float:
    status = Path(f"/proc/{server.pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM"))) / 1024
