"""End to end through the real tritonserver (tiny profile) + the orchestrator process + the client library and CLI,
on the shared examples: frame counts, frame rates, resolution, audio and a playable H.264 stream."""
from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import cv2
import grpc
import numpy as np
import pytest

from client.api import PortraitClient
from client.cli import main as cli
from client.templates import read_template
from load_tests import scenarios
from orchestrator.embedded import OrchestratorProcess

from video_checks import clip, inspect, playable_frames, top_level_boxes

EXAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "examples"
BUILD = Path(__file__).resolve().parents[1] / "build" / "test"

pytestmark = pytest.mark.triton


@pytest.fixture(scope="module")
def server(triton_server):
    with OrchestratorProcess(triton_server.grpc_url, BUILD / "orchestrator-e2e.log") as process:
        yield process


@pytest.fixture(scope="module")
def client(server):
    with PortraitClient(server.target) as c:
        yield c


def expected_size(image_path: Path) -> tuple[int, int]:
    """(w, h) after the official source_max_dim 1280 / source_division 2 rule (these examples are <= 1280)."""
    h, w = cv2.imread(str(image_path)).shape[:2]
    assert max(h, w) <= 1280
    return w - w % 2, h - h % 2


def short_template(name: str, frames: int):
    return scenarios.short_template(EXAMPLES / "templates" / name, frames)


def test_video_with_audio(client, tmp_path):
    driving = clip(EXAMPLES / "driving" / "d3.mp4", tmp_path / "d3-short.mp4", frames=20)
    summary = client.animate(EXAMPLES / "source" / "s0.jpg", driving, tmp_path / "out.mp4")
    out = inspect(tmp_path / "out.mp4")
    assert out["frames"] == summary.frames == 20
    assert out["rate"] == 30
    assert out["size"] == expected_size(EXAMPLES / "source" / "s0.jpg") == (summary.width, summary.height)
    assert out["audio"] and summary.has_audio
    assert (out["codec"], out["pix_fmt"]) == ("h264", "yuv420p")
    assert any("synthetic" in w for w in summary.warnings)


def test_whole_driving_video_keeps_every_frame(client, tmp_path):
    summary = client.animate(EXAMPLES / "source" / "s5.jpg", EXAMPLES / "driving" / "d0.mp4", tmp_path / "out.mp4")
    out = inspect(tmp_path / "out.mp4")
    with av.open(str(EXAMPLES / "driving" / "d0.mp4")) as c:
        driving_frames = sum(1 for _ in c.decode(video=0))
    assert out["frames"] == summary.frames == driving_frames
    assert out["rate"] == 25 and not out["audio"]
    assert out["size"] == expected_size(EXAMPLES / "source" / "s5.jpg")
    per_frame = (summary.triton_bytes_sent + summary.triton_bytes_received) / summary.frames
    assert per_frame <= 1e6, "the feature volume must not cross the network"


def test_non_square_driving_video_is_cropped_by_the_tracker(client, tmp_path):
    driving = clip(EXAMPLES / "driving" / "d0.mp4", tmp_path / "wide.mp4", frames=12, size=(512, 384))
    summary = client.animate(EXAMPLES / "source" / "s12.jpg", driving, tmp_path / "out.mp4")
    out = inspect(tmp_path / "out.mp4")
    assert out["frames"] == 12 and out["size"] == expected_size(EXAMPLES / "source" / "s12.jpg")
    assert summary.frames == 12


def test_fractional_frame_rate_is_kept(client, tmp_path):
    driving = clip(EXAMPLES / "driving" / "d0.mp4", tmp_path / "ntsc.mp4", frames=10, fps=Fraction(30000, 1001))
    summary = client.animate(EXAMPLES / "source" / "s3.jpg", driving, tmp_path / "out.mp4")
    out = inspect(tmp_path / "out.mp4")
    assert out["rate"] == Fraction(30000, 1001) and (summary.fps.num, summary.fps.den) == (30000, 1001)
    assert out["frames"] == 10


@pytest.mark.parametrize("image", ["d9.jpg", "d12.jpg", "d30.jpg"])
def test_driving_image_gives_one_frame(client, tmp_path, image):
    summary = client.animate(EXAMPLES / "source" / "s7.jpg", EXAMPLES / "driving" / image, tmp_path / "out.mp4")
    out = inspect(tmp_path / "out.mp4")
    assert out["frames"] == summary.frames == 1
    assert out["size"] == expected_size(EXAMPLES / "source" / "s7.jpg")


def test_a_still_driving_input_gives_a_still_image_with_the_source_around_the_face(client, tmp_path):
    """An output ending .png asks for a still image: the source's size, its own pixels away from the face (pasted
    back in RGB, not through a video's 4:2:0 colour), the face animated."""
    rng = np.random.default_rng(5)
    scene = rng.integers(0, 256, (800, 1200, 3), dtype=np.uint8)  # fine colour detail that 4:2:0 would lose
    scene[200:600, 400:800] = cv2.resize(cv2.imread(str(EXAMPLES / "source" / "s7.jpg")), (400, 400))
    cv2.imwrite(str(tmp_path / "scene.png"), scene)
    summary = client.animate(tmp_path / "scene.png", EXAMPLES / "driving" / "d9.jpg", tmp_path / "out.png")
    image = cv2.imread(str(tmp_path / "out.png"))
    assert image.shape == scene.shape and (summary.frames, summary.width, summary.height) == (1, 1200, 800)
    assert summary.video_bytes == (tmp_path / "out.png").stat().st_size
    x1, y1, x2, y2 = summary.source_face_box
    yy, xx = np.mgrid[0:800, 0:1200]
    distance = np.hypot(xx - (x1 + x2) / 2, yy - (y1 + y2) / 2)
    away = distance > 1.7 * max(x2 - x1, y2 - y1)  # beyond the 2.3x crop's corners
    assert away.mean() > 0.3 and np.array_equal(image[away], scene[away])
    near = distance < 0.3 * max(x2 - x1, y2 - y1)
    assert np.abs(image[near].astype(int) - scene[near]).mean() > 2  # the face is animated (synthetic weights)


def test_a_still_image_as_jpeg_from_a_one_frame_template(client, tmp_path):
    summary = client.animate(EXAMPLES / "source" / "s9.jpg", short_template("d7.pkl", 1), tmp_path / "out.jpg",
                             jpeg_quality=80)
    assert (tmp_path / "out.jpg").read_bytes()[:3] == b"\xff\xd8\xff" and summary.frames == 1
    assert cv2.imread(str(tmp_path / "out.jpg")).shape[1::-1] == expected_size(EXAMPLES / "source" / "s9.jpg")


def test_a_still_image_of_a_moving_driving_input_is_refused_in_words(client, tmp_path):
    for driving in (EXAMPLES / "driving" / "d0.mp4", short_template("d7.pkl", 3)):
        with pytest.raises(grpc.RpcError) as refused:
            client.animate(EXAMPLES / "source" / "s9.jpg", driving, tmp_path / "out.png")
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "needs exactly one animated frame" in refused.value.details() and "ask for an MP4" in \
            refused.value.details()
    assert not list(tmp_path.iterdir())  # no output, no part file
    client.animate(EXAMPLES / "source" / "s9.jpg", short_template("d7.pkl", 3), tmp_path / "out.mp4")  # serving


@pytest.mark.parametrize("name,frames", [("d7.pkl", 9), ("laugh.pkl", 5)])
def test_template_driving(client, tmp_path, name, frames):
    template = short_template(name, frames)
    summary = client.animate(EXAMPLES / "source" / "s9.jpg", template, tmp_path / "out.mp4")
    out = inspect(tmp_path / "out.mp4")
    assert out["frames"] == summary.frames == frames
    assert out["rate"] == Fraction(template.fps.num, template.fps.den)
    assert out["size"] == expected_size(EXAMPLES / "source" / "s9.jpg") and not out["audio"]


@pytest.mark.parametrize("source", ["s1.jpg", "s22.jpg"])
def test_output_has_the_source_resolution(client, tmp_path, source):
    summary = client.animate(EXAMPLES / "source" / source, short_template("d7.pkl", 2), tmp_path / "out.mp4")
    assert inspect(tmp_path / "out.mp4")["size"] == expected_size(EXAMPLES / "source" / source)
    assert (summary.width, summary.height) == expected_size(EXAMPLES / "source" / source)


def test_without_source_cropping_the_whole_image_is_the_face(client, tmp_path):
    """crop_source off (official flag_do_crop False): no detection needed, no paste-back, 512x512 output."""
    summary = client.animate(EXAMPLES / "source" / "s33.jpg", short_template("d7.pkl", 2), tmp_path / "out.mp4",
                             crop_source=False)
    assert inspect(tmp_path / "out.mp4")["size"] == (512, 512) and summary.frames == 2


def test_large_source_is_limited_to_1280(client, tmp_path):
    image = cv2.imread(str(EXAMPLES / "source" / "s5.jpg"))
    big = tmp_path / "big.png"
    cv2.imwrite(str(big), cv2.resize(image, (1801, 1801)))
    client.animate(big, short_template("d7.pkl", 2), tmp_path / "out.mp4")
    assert inspect(tmp_path / "out.mp4")["size"] == (1280, 1280)


def test_options_change_the_animation(client, tmp_path):
    template = short_template("d7.pkl", 6)
    source = EXAMPLES / "source" / "s0.jpg"
    client.animate(source, template, tmp_path / "a.mp4")
    client.animate(source, template, tmp_path / "b.mp4", animation_region="pose", driving_multiplier=1.5,
                   eye_retargeting=True, stitching=True)
    client.animate(source, template, tmp_path / "c.mp4", paste_back=False)
    a, b = (np.stack(_frames(tmp_path / n)) for n in ("a.mp4", "b.mp4"))
    assert a.shape == b.shape and np.abs(a.astype(int) - b.astype(int)).mean() > 0.1
    assert inspect(tmp_path / "c.mp4")["size"] == (512, 512)


def _frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def test_extract_motion_then_animate_with_it(client, tmp_path):
    driving = clip(EXAMPLES / "driving" / "d0.mp4", tmp_path / "d0-short.mp4", frames=14)
    template = client.extract_motion(driving)
    assert template.n_frames == len(template.frames) == 14
    assert (template.fps.num, template.fps.den) == (25, 1)
    assert all(len(f.rotation) == 9 and len(f.exp) == 63 and len(f.eye_ratio) == 2 for f in template.frames)
    rotation = np.array(template.frames[3].rotation).reshape(3, 3)
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-5)
    summary = client.animate(EXAMPLES / "source" / "s0.jpg", template, tmp_path / "out.mp4")
    assert summary.frames == 14 and inspect(tmp_path / "out.mp4")["rate"] == 25


def test_cli_animate_extract_and_detect(server, tmp_path, capsys):
    out = tmp_path / "cli.mp4"
    code = cli(["animate", "--server", server.target, "--source", str(EXAMPLES / "source" / "s0.jpg"),
                "--driving", str(EXAMPLES / "templates" / "wink.pkl"), "-o", str(out), "--driving-multiplier", "1.2",
                "--encoder-speed", "smallest"])
    assert code == 0 and out.is_file() and b"cabac=1" in out.read_bytes()  # veryfast, not the default ultrafast
    assert inspect(out)["frames"] == read_template(EXAMPLES / "templates" / "wink.pkl").n_frames
    capsys.readouterr()
    assert cli(["detect", "--server", server.target, str(EXAMPLES / "source" / "s0.jpg"), "--json"]) == 0
    faces = json.loads(capsys.readouterr().out)["faces"]
    assert len(faces) >= 1
    face = faces[0]
    h, w = cv2.imread(str(EXAMPLES / "source" / "s0.jpg")).shape[:2]
    assert len(face["landmarks"]) == 468 and len(face["eye_ratio"]) == 2
    x1, y1, x2, y2 = face["box"]
    assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h


def test_cli_detect_without_a_face_prints_an_empty_list(server, tmp_path, capsys):
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((300, 400, 3), 128, np.uint8))
    assert cli(["detect", "--server", server.target, str(blank), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"faces": []}


def test_cli_health(server, capsys):
    assert cli(["health", "--server", server.target]) == 0
    assert capsys.readouterr().out.strip() == "SERVING"


def test_small_face_in_a_wide_scene_is_found_and_only_its_region_changes(client, tmp_path):
    """A 2400x1200 scene with one face ~4% of its width (too small for the detector's whole-image view of the 1280 px
    source; found by the window search). The output keeps the scene (resized to 1280x640) and animates only the face's region."""
    rng = np.random.default_rng(3)
    scene = cv2.resize(rng.integers(60, 200, (12, 24, 3), dtype=np.uint8), (2400, 1200), interpolation=cv2.INTER_CUBIC)
    portrait = cv2.imread(str(EXAMPLES / "source" / "s5.jpg"))
    h, w = portrait.shape[:2]
    side = int(0.9 * min(h, w))
    patch = cv2.resize(portrait[(h - side) // 2:(h + side) // 2, (w - side) // 2:(w + side) // 2], (400, 400))
    scene[420:820, 1420:1820] = patch
    source = tmp_path / "scene.png"
    cv2.imwrite(str(source), scene)
    summary = client.animate(source, short_template("d7.pkl", 2), tmp_path / "out.mp4")
    assert (summary.width, summary.height) == (1280, 640)
    first = cv2.cvtColor(_frames(tmp_path / "out.mp4")[0], cv2.COLOR_RGB2BGR).astype(np.int16)
    resized = cv2.resize(scene, (1280, 640), interpolation=cv2.INTER_AREA).astype(np.int16)
    difference = np.abs(first - resized).mean(axis=2)
    centre = np.array([1620, 620]) * 1280 / 2400
    yy, xx = np.mgrid[0:640, 0:1280]
    distance = np.hypot(xx - centre[0], yy - centre[1])
    assert difference[distance > 300].mean() < 4, "the scene away from the face is left as it was"
    assert difference[distance < 40].mean() > 8, "the face is animated (synthetic weights: visibly changed)"


class _EventLog:
    """The MP4 bytes a client had received when each progress message arrived."""

    def __init__(self):
        self.data = b""
        self.at_progress: list[tuple[int, bytes]] = []

    def write(self, data: bytes) -> None:
        self.data += data

    def progress(self, p) -> None:
        self.at_progress.append((p.frames_done, self.data))


@pytest.mark.parametrize("low_latency", [False, True])
def test_low_latency_streams_video_while_rendering(client, tmp_path, low_latency):
    """24 frames (under a second of video): by default nothing is playable before the last frame is rendered; with
    low_latency the frames of the chunks rendered so far are."""
    log = _EventLog()
    summary = client.animate(EXAMPLES / "source" / "s9.jpg", short_template("d7.pkl", 24), sink=log,
                             on_progress=log.progress, low_latency=low_latency)
    assert summary.frames == 24 and playable_frames(log.data, tmp_path / "whole.mp4") == 24
    done, received = log.at_progress[-1]
    assert done == 24
    playable = playable_frames(received, tmp_path / "partial.mp4")
    assert playable >= 16 if low_latency else playable == 0, log.at_progress


def test_every_encoder_speed_gives_a_browser_playable_mp4(client, tmp_path):
    """Each OutputOptions.encoder_speed, with and without low_latency: H.264 (avc1) in yuv420p,
    every frame decodable, fragmented with the moov first (playable while it streams); "smallest" is smaller than
    "fastest" (same quality by design, ~2.5x the bytes)."""
    sizes = {}
    for speed in ("smallest", "balanced", "fastest"):
        for low_latency, frames in ((False, 30), (True, 12)):
            path = tmp_path / f"{speed}-{low_latency}.mp4"
            summary = client.animate(EXAMPLES / "source" / "s9.jpg", short_template("d7.pkl", frames), path,
                                     encoder_speed=speed, low_latency=low_latency)
            data = path.read_bytes()
            out = inspect(path)
            assert (out["codec"], out["pix_fmt"], out["frames"]) == ("h264", "yuv420p", frames), speed
            boxes = top_level_boxes(data)
            assert boxes[:2] == ["ftyp", "moov"] and "moof" in boxes and b"avc1" in data[:4096], (speed, boxes)
            assert (b"cabac=0" in data) == (speed == "fastest"), "libx264's settings (ultrafast: no CABAC) were used"
            assert summary.frames == frames and summary.video_bytes == len(data)
            sizes[speed, low_latency] = len(data)
    assert sizes["smallest", False] < sizes["fastest", False], sizes


def test_the_asyncio_client_animates_too(server, tmp_path):
    import asyncio

    from client.api import AsyncPortraitClient

    async def go():
        async with AsyncPortraitClient(server.target) as client:
            assert await client.health() == "SERVING"
            return await client.animate(EXAMPLES / "source" / "s9.jpg", short_template("d7.pkl", 3), tmp_path / "a.mp4")

    summary = asyncio.run(go())
    assert summary.frames == 3 and inspect(tmp_path / "a.mp4")["frames"] == 3


def test_smoothing_off_is_bit_identical_and_on_steadies_the_motion(client, server, tmp_path):
    """options.smoothing: absent or `enabled: false` -> the same MP4, byte for byte; enabled (library and CLI) ->
    other frames, same count; a bad setting -> INVALID_ARGUMENT naming the field."""
    import grpc

    template = short_template("d7.pkl", 10)
    source = EXAMPLES / "source" / "s9.jpg"
    client.animate(source, template, tmp_path / "plain.mp4")
    client.animate(source, template, tmp_path / "off.mp4", smoothing=False)
    assert (tmp_path / "plain.mp4").read_bytes() == (tmp_path / "off.mp4").read_bytes()
    plain = np.stack(_frames(tmp_path / "plain.mp4"))
    template_file = tmp_path / "d7-10.pb"
    template_file.write_bytes(template.SerializeToString())
    assert cli(["animate", "--server", server.target, "--source", str(source), "--driving", str(template_file),
                "-o", str(tmp_path / "smooth.mp4"), "--smooth", "--smooth-min-cutoff", "0.5"]) == 0
    smooth = np.stack(_frames(tmp_path / "smooth.mp4"))
    assert smooth.shape == plain.shape and np.abs(smooth.astype(int) - plain.astype(int)).mean() > 0.05
    with pytest.raises(grpc.RpcError) as error:
        client.animate(source, template, tmp_path / "bad.mp4", smoothing={"min_cutoff_hz": 0.0})
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "smoothing.min_cutoff_hz" in error.value.details()


def test_smoothing_study_on_extract_motion_of_a_driving_video(server, tmp_path):
    """load_tests/smoothing_study.py on ExtractMotion's template of a few frames of d0.mp4."""
    from load_tests import smoothing_study as study
    from orchestrator.smoothing import SmoothingOptions

    driving = clip(EXAMPLES / "driving" / "d0.mp4", tmp_path / "d0-12.mp4", frames=12, audio=False)
    motion, fps = study.video_motion(driving, server.target)
    assert len(motion) == 12 and fps == 25
    result = study.study(motion, fps, (0, 12), SmoothingOptions(), "d0[:12]")
    assert result.jitter_smooth["angles"] <= result.jitter_raw["angles"]
    assert result.step_lag_frames is not None


def _counter(server, name: str) -> float:
    import urllib.request

    text = urllib.request.urlopen(server.metrics_url, timeout=5).read().decode()
    return next((float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " ")), 0.0)


def test_a_repeated_driving_video_is_served_from_the_motion_cache_with_the_same_result(client, server, tmp_path):
    driving = clip(EXAMPLES / "driving" / "d0.mp4", tmp_path / "d0-cached.mp4", frames=11, audio=False)
    hits, misses = "liveportrait_motion_cache_hits_total", "liveportrait_motion_cache_misses_total"
    before = _counter(server, hits), _counter(server, misses)
    client.animate(EXAMPLES / "source" / "s0.jpg", driving, tmp_path / "first.mp4")
    assert (_counter(server, hits), _counter(server, misses)) == (before[0], before[1] + 1)
    client.animate(EXAMPLES / "source" / "s0.jpg", driving, tmp_path / "second.mp4")
    assert (_counter(server, hits), _counter(server, misses)) == (before[0] + 1, before[1] + 1)
    assert _counter(server, "liveportrait_motion_cache_bytes") > 11 * 300
    first, second = _frames(tmp_path / "first.mp4"), _frames(tmp_path / "second.mp4")
    assert len(first) == 11 and all(np.array_equal(a, b) for a, b in zip(first, second))
