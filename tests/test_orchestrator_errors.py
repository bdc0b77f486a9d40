"""Every error class, each followed by a valid request that succeeds; cancellation stops Triton work; overload is
refused at once; memory stays flat while a long driving video streams; metrics are exposed and counted."""
from __future__ import annotations

import os
import re
import signal
import socket
import threading
import time
import urllib.request
from pathlib import Path

import av
import cv2
import grpc
import numpy as np
import pytest

from client.api import PortraitClient
from client.messages import animate_requests, animation_options
from client.templates import read_template
from orchestrator.embedded import OrchestratorProcess
from orchestrator.triton_process import TritonProcess
from protos.liveportrait.v1 import portrait_animator_pb2 as pb

EXAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "examples"
BUILD = Path(__file__).resolve().parents[1] / "build" / "test"
SOURCE = EXAMPLES / "source" / "s0.jpg"
MAX_DRIVING_BYTES = 4_000_000

pytestmark = pytest.mark.triton


@pytest.fixture(scope="module")
def triton_server(tiny_cpu_repository):
    """This module's own tritonserver. Its tests cancel requests in flight, and tritonserver 2.51 (the embedded
    build) can crash on a gRPC cancellation that races the response (triton-inference-server/server#7840, fixed in
    24.12): no other module shares this server."""
    with TritonProcess(tiny_cpu_repository, log_file=BUILD / "tritonserver-errors.log") as server:
        yield server


@pytest.fixture(scope="module")
def server(triton_server):
    args = ("--max-concurrent", "1", "--max-queued", "1", "--max-driving-bytes", str(MAX_DRIVING_BYTES),
            "--max-frames", "400")
    with OrchestratorProcess(triton_server.grpc_url, BUILD / "orchestrator-errors.log", extra_args=args) as process:
        yield process


@pytest.fixture(scope="module")
def client(server):
    with PortraitClient(server.target) as c:
        yield c


def template(frames: int, name: str = "d7.pkl") -> pb.MotionTemplate:
    """The first frames of an example template, repeated to reach ``frames``."""
    original = read_template(EXAMPLES / "templates" / name)
    out = pb.MotionTemplate()
    out.CopyFrom(original)
    del out.frames[:]
    out.frames.extend(original.frames[i % len(original.frames)] for i in range(frames))
    out.n_frames = frames
    return out


def assert_still_serving(client: PortraitClient, tmp_path: Path) -> None:
    summary = client.animate(SOURCE, template(2), tmp_path / "ok.mp4", timeout=120)
    assert summary.frames == 2


def call(client: PortraitClient, setup: pb.AnimateSetup, extra: list[pb.AnimateRequest] = (), timeout=60):
    requests = [pb.AnimateRequest(setup=setup), *extra]
    return list(client.stub.AnimatePortrait(iter(requests), timeout=timeout))


def setup_with(**changes) -> pb.AnimateSetup:
    setup = pb.AnimateSetup(source_image=SOURCE.read_bytes(), driving_template=template(2))
    for name, value in changes.items():
        if name == "options":
            setup.options.CopyFrom(value)
        elif isinstance(value, pb.MotionTemplate):
            getattr(setup, name).CopyFrom(value)
        else:
            setattr(setup, name, value)
    return setup


def metrics(url: str) -> dict[str, float]:
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def bad_template() -> pb.MotionTemplate:
    t = template(3)
    t.n_frames = 7
    return t


def nan_ratio_template(field: str) -> pb.MotionTemplate:
    t = template(3)
    if field == "eye_ratio":
        t.frames[1].eye_ratio[0] = float("nan")
    else:
        t.frames[1].lip_ratio = float("inf")
    return t


INVALID = {
    "empty source": (dict(source_image=b""), "source_image is empty"),
    "garbage source": (dict(source_image=b"\x00not an image" * 50), "not an image"),
    "video as source": (dict(source_image=(EXAMPLES / "source" / "s13.mp4").read_bytes()), "image"),
    "negative multiplier": (dict(options=animation_options(driving_multiplier=-1.0)), "driving_multiplier"),
    "unknown face order": (dict(options=animation_options(face_order="sideways")), "face_order"),
    "face index out of range": (dict(options=animation_options(face_index=7)), "face index 7"),
    "template frame count": (dict(driving_template=bad_template()), "n_frames"),
    "retargeting without ratios": (dict(driving_template=template(2, "laugh.pkl"),
                                        options=animation_options(eye_retargeting=True)), "eye ratios"),
    # issue 13 defect 5: non-finite ratios were accepted and corrupted the retargeted frames
    "NaN eye ratio": (dict(driving_template=nan_ratio_template("eye_ratio"),
                           options=animation_options(eye_retargeting=True)), "frame 1: eye_ratio holds a non-finite"),
    "inf lip ratio": (dict(driving_template=nan_ratio_template("lip_ratio"),
                           options=animation_options(lip_retargeting=True)), "frame 1: lip_ratio holds a non-finite"),
}


@pytest.mark.parametrize("case", list(INVALID))
def test_invalid_input_is_invalid_argument(client, tmp_path, case):
    changes, fragment = INVALID[case]
    with pytest.raises(grpc.RpcError) as error:
        call(client, setup_with(**changes))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert fragment in error.value.details()
    assert "Traceback" not in error.value.details()
    assert_still_serving(client, tmp_path)


def test_missing_driving_is_invalid_argument(client, tmp_path):
    setup = pb.AnimateSetup(source_image=SOURCE.read_bytes())
    with pytest.raises(grpc.RpcError) as error:
        call(client, setup)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "driving" in error.value.details()
    assert_still_serving(client, tmp_path)


def test_oversized_driving_video_is_refused(client, tmp_path):
    announced = pb.AnimateSetup(source_image=SOURCE.read_bytes(),
                                driving_video=pb.DrivingVideo(size_bytes=MAX_DRIVING_BYTES + 1))
    with pytest.raises(grpc.RpcError) as error:
        call(client, announced)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "limit" in error.value.details()
    unannounced = pb.AnimateSetup(source_image=SOURCE.read_bytes(), driving_video=pb.DrivingVideo())
    chunks = [pb.AnimateRequest(driving_chunk=b"\0" * 1_000_000) for _ in range(5)]
    with pytest.raises(grpc.RpcError) as error:
        call(client, unannounced, chunks)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "limit" in error.value.details()
    assert_still_serving(client, tmp_path)


def assert_no_internals(details: str) -> None:
    """Issue 13 defects 6 and 7: no server path, no raw PyAV/FFmpeg text in a client-facing message."""
    for internal in ("/tmp", "driving-", ".bin", "Errno", "avcodec", "last_call", "Traceback"):
        assert internal not in details, details


def test_undecodable_driving_video_is_invalid_argument(client, tmp_path):
    setup = pb.AnimateSetup(source_image=SOURCE.read_bytes(), driving_video=pb.DrivingVideo())
    with pytest.raises(grpc.RpcError) as error:
        call(client, setup, [pb.AnimateRequest(driving_chunk=b"garbage" * 1000)])
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "driving video" in error.value.details()
    assert_no_internals(error.value.details())
    assert_still_serving(client, tmp_path)


def corrupt_video(path: Path) -> Path:
    """d0.mp4 with 200 kB of its H.264 data scrambled a tenth of the way in (the first frames stay intact)."""
    data = bytearray((EXAMPLES / "driving" / "d0.mp4").read_bytes())
    a = len(data) // 10
    data[a:a + 200_000] = (np.frombuffer(bytes(data[a:a + 200_000]), np.uint8) ^ 0x5A).tobytes()
    path.write_bytes(bytes(data))
    return path


def test_corrupt_driving_video_is_reported_in_words(client, tmp_path):
    with pytest.raises(grpc.RpcError) as error:
        client.animate(SOURCE, corrupt_video(tmp_path / "corrupt.mp4"), tmp_path / "out.mp4", timeout=120)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "the driving video could not be decoded (corrupt or unsupported H.264 stream at frame" in \
        error.value.details()
    assert_no_internals(error.value.details())
    assert_still_serving(client, tmp_path)


def test_announced_size_must_match_the_bytes_received(client, tmp_path):
    video = (EXAMPLES / "driving" / "d0.mp4").read_bytes()[:300_000]
    setup = pb.AnimateSetup(source_image=SOURCE.read_bytes(), driving_video=pb.DrivingVideo(size_bytes=1_000_000))
    with pytest.raises(grpc.RpcError) as error:
        call(client, setup, [pb.AnimateRequest(driving_chunk=video)])
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "1000000 bytes" in error.value.details() and "300000 bytes arrived" in error.value.details()
    assert_still_serving(client, tmp_path)


def blank_video(path: Path, size: tuple[int, int] = (256, 256), frames: int = 4) -> Path:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for i in range(frames):
            image = np.full((size[1], size[0], 3), 120 + 10 * i, np.uint8)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        out.mux(stream.encode(None))
    return path


@pytest.mark.parametrize("kind", ["square video", "square video, crop off", "image", "square image"])
def test_driving_input_without_a_face_is_failed_precondition(client, tmp_path, kind):
    """Issue 13 defect 4: an uncropped (square) driving video or a driving image without a face was animated
    silently; like the official pipeline, its first frame must show a face."""
    options = {"crop_driving_video": "off"} if "crop off" in kind else {}
    if "video" in kind:
        driving, what = blank_video(tmp_path / "blank.mp4"), "driving video"
    else:
        size = (256, 256) if "square" in kind else (320, 240)
        driving, what = tmp_path / "blank.png", "driving image"
        driving.write_bytes(cv2.imencode(".png", np.full((size[1], size[0], 3), 200, np.uint8))[1].tobytes())
    with pytest.raises(grpc.RpcError) as error:
        client.animate(SOURCE, driving, tmp_path / "out.mp4", timeout=60, **options)
    assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "no face was found in the" in error.value.details() and what in error.value.details()
    assert not (tmp_path / "out.mp4").exists()
    if kind == "square video":
        with pytest.raises(grpc.RpcError) as error:
            client.extract_motion(driving, timeout=60)
        assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION and what in error.value.details()
    assert_still_serving(client, tmp_path)


def test_no_face_is_failed_precondition_with_a_hint(client, tmp_path):
    blank = cv2.imencode(".png", np.full((400, 300, 3), 200, np.uint8))[1].tobytes()
    with pytest.raises(grpc.RpcError) as error:
        call(client, setup_with(source_image=blank))
    assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "no face" in error.value.details() and "crop" in error.value.details()
    # issue 13 defect 7: the option is crop_source (--no-crop-source), not "crop: off"
    assert "`crop_source: false`" in error.value.details() and "--no-crop-source" in error.value.details()
    assert "crop: off" not in error.value.details()
    assert_still_serving(client, tmp_path)


def test_memory_stays_flat_while_a_long_video_streams(client, server, tmp_path):
    video = long_video(tmp_path / "long.mp4", repeats=3)
    assert video.stat().st_size < MAX_DRIVING_BYTES
    samples: dict[int, int] = {}

    def on_progress(progress: pb.Progress) -> None:
        if progress.frames_done:
            samples[progress.frames_done] = rss_bytes(server.pid)

    summary = client.animate(SOURCE, video, tmp_path / "long-out.mp4", on_progress=on_progress, timeout=600)
    assert summary.frames == 3 * 78
    points = sorted((k, v) for k, v in samples.items() if 64 <= k < summary.frames)  # after warm-up
    assert len(points) >= 10
    frames, rss = np.array(points, float).T
    slope = np.polyfit(frames, rss, 1)[0]  # bytes per frame
    # holding the decoded video would grow by one 512x512 frame (786 kB) per frame; allow a fifth of that
    assert slope < 0.2 * 512 * 512 * 3, f"orchestrator RSS grows by {slope * 100 / 1e6:.1f} MB per 100 frames"


def test_metrics_are_exposed_and_counted(client, server, tmp_path):
    before = metrics(server.metrics_url)
    client.animate(SOURCE, template(3), tmp_path / "m.mp4")
    after = metrics(server.metrics_url)
    ok = 'liveportrait_requests_total{code="OK",method="AnimatePortrait"}'
    assert after[ok] == before.get(ok, 0) + 1
    assert after["liveportrait_frames_rendered_total"] == before.get("liveportrait_frames_rendered_total", 0) + 3
    for stage in ("decode", "detect", "motion", "keypoints", "render", "paste_back", "encode"):
        key = f'liveportrait_stage_duration_seconds_count{{stage="{stage}"}}'
        assert after[key] == before.get(key, 0) + 1, stage
    render = 'liveportrait_triton_request_duration_seconds_count{model="render_i420"}'
    assert after[render] > before.get(render, 0)
    for direction in ("sent", "received"):
        key = f'liveportrait_triton_bytes_total{{direction="{direction}"}}'
        assert after[key] > before.get(key, 0)
    assert after['liveportrait_client_bytes_total{direction="out"}'] > before.get(
        'liveportrait_client_bytes_total{direction="out"}', 0)
    assert 'liveportrait_request_duration_seconds_count{method="AnimatePortrait"}' in after
    assert after["liveportrait_requests_in_flight"] == 0 and after["liveportrait_requests_queued"] == 0


# Tests that cancel work in flight come last: see the module-level triton_server fixture.
def test_deadline_exceeded(client, tmp_path):
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as error:
        client.animate(SOURCE, template(200), tmp_path / "late.mp4", timeout=2.0)
    assert error.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 10
    assert not (tmp_path / "late.mp4").exists(), "a failed call leaves no partial output"
    assert_still_serving(client, tmp_path)


def render_count(triton_server) -> float:
    values = metrics(triton_server.metrics_url)
    return sum(v for k, v in values.items() if k.startswith("nv_inference_request_success")
               and 'model="warping_spade"' in k)


def test_cancel_mid_stream_stops_triton_work(client, server, triton_server, tmp_path):
    stream = client.stream(animate_requests(SOURCE, template(300)), timeout=300)
    rendered = 0
    for response in stream:
        if response.HasField("progress") and response.progress.frames_done >= 16:
            rendered = response.progress.frames_done
            break
    stream.cancel()
    assert rendered >= 16
    time.sleep(2.0)  # a batch already inside Triton may finish
    before = render_count(triton_server)
    time.sleep(4.0)
    assert render_count(triton_server) == before, "Triton kept rendering after the client cancelled"
    assert metrics(server.metrics_url).get(
        'liveportrait_requests_total{code="CANCELLED",method="AnimatePortrait"}', 0) >= 1
    assert_still_serving(client, tmp_path)


def test_overload_is_refused_at_once(client, server, tmp_path):
    streams = [client.stream(animate_requests(SOURCE, template(300)), timeout=300) for _ in range(2)]
    endings: list[grpc.StatusCode] = []
    threads = [threading.Thread(target=drain, args=(s, endings), daemon=True) for s in streams]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # one running, one queued
        m = metrics(server.metrics_url)
        if m.get("liveportrait_requests_in_flight") == 1 and m.get("liveportrait_requests_queued") == 1:
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"the server never had one call running and one queued: {m}")
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as error:
        call(client, setup_with())
    assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert time.monotonic() - started < 2.0
    for s in streams:
        s.cancel()
    for t in threads:
        t.join(30)
    assert endings == [grpc.StatusCode.CANCELLED] * 2
    assert_still_serving(client, tmp_path)


def test_past_the_drain_time_a_running_request_ends_unavailable_in_words(triton_server, tmp_path):
    """A request still running when --drain-seconds is over ended with gRPC's "Cancelling all calls" (issue 17)."""
    with OrchestratorProcess(triton_server.grpc_url, tmp_path / "orchestrator.log",
                             extra_args=("--drain-seconds", "1")) as process:
        with PortraitClient(process.target) as c:
            stream = c.stream(animate_requests(SOURCE, template(300)), timeout=300)
            for response in stream:
                if response.HasField("progress") and response.progress.frames_done >= 8:
                    break
            os.kill(process.pid, signal.SIGTERM)
            with pytest.raises(grpc.RpcError) as error:
                for _ in stream:
                    pass
        assert error.value.code() == grpc.StatusCode.UNAVAILABLE
        assert error.value.details() == ("the server is shutting down and this request did not finish within its drain "
                                         "time (--drain-seconds); retry (another replica will take the request)")
        assert process._process.wait(60) == 0
    assert "Traceback" not in (tmp_path / "orchestrator.log").read_text()


def drain(stream, endings: list) -> None:
    """Read a response stream to its end and record how it ended."""
    try:
        for _ in stream:
            pass
        endings.append(grpc.StatusCode.OK)
    except grpc.RpcError as error:
        endings.append(error.code())


def long_video(path: Path, repeats: int) -> Path:
    """d0.mp4 played ``repeats`` times in a row (no audio)."""
    with av.open(str(EXAMPLES / "driving" / "d0.mp4")) as inp:
        frames = [f.to_ndarray(format="rgb24") for f in inp.decode(video=0)]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "30"}
        for _ in range(repeats):
            for frame in frames:
                out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode(None))
    return path


def rss_bytes(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) * 1024


def test_triton_down_is_unavailable_and_not_serving(tmp_path):
    # a port held bound but never listening: connections are refused, and no other test's server can take it
    # (a free port picked and released was once taken by another gRPC server, which answered UNIMPLEMENTED)
    reserved = socket.socket()
    reserved.bind(("127.0.0.1", 0))
    dead = f"127.0.0.1:{reserved.getsockname()[1]}"
    with reserved, OrchestratorProcess(dead, BUILD / "orchestrator-no-triton.log", require_serving=False) as process:
        with PortraitClient(process.target) as c:
            assert c.health() == "NOT_SERVING"
            assert c.health("liveportrait.v1.PortraitAnimator") == "NOT_SERVING"
            with pytest.raises(grpc.RpcError) as error:
                c.animate(SOURCE, template(2), tmp_path / "x.mp4", timeout=30)
            assert error.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "Triton" in error.value.details()
            with pytest.raises(grpc.RpcError) as error:  # still answering, still the same clear error
                c.animate(SOURCE, template(2), tmp_path / "x.mp4", timeout=30)
            assert error.value.code() == grpc.StatusCode.UNAVAILABLE
