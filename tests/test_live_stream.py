"""AnimateStream (live animation) through the real tritonserver (tiny profile) and the orchestrator process, with the
client library (client/live.py) and ``liveportrait live``: frames in order with their timestamps, dropping under
overload with bounded latency, cancellation, tracking loss, and the limits' status codes."""
from __future__ import annotations

import asyncio
import time
import urllib.request
from pathlib import Path

import av
import cv2
import grpc
import numpy as np
import pytest

from client.api import AsyncPortraitClient
from client.cli import main as cli
from client.live import frame_message, live_setup
from orchestrator.embedded import OrchestratorProcess
from orchestrator.live import FrameRate, FrameSlot
from orchestrator.live.animator import Arrival
from protos.liveportrait.v1 import portrait_animator_pb2 as pb
from protos.liveportrait.v1 import portrait_animator_pb2_grpc as pb_grpc

from video_checks import clip

EXAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "examples"
BUILD = Path(__file__).resolve().parents[1] / "build" / "test"
SOURCE = EXAMPLES / "source" / "s0.jpg"
IDLE_S = 4.0



@pytest.fixture(scope="module")
def server(triton_server):
    args = ("--live-max-streams", "3", "--live-max-fps", "30", "--live-idle-timeout", str(IDLE_S),
            "--live-max-frame-side", "1024")
    with OrchestratorProcess(triton_server.grpc_url, BUILD / "orchestrator-live.log", extra_args=args) as process:
        yield process


@pytest.fixture(scope="module")
def faces() -> list[np.ndarray]:
    """The first 12 frames of d0.mp4 (RGB 512x512, a face in each)."""
    with av.open(str(EXAMPLES / "driving" / "d0.mp4")) as container:
        frames = []
        for frame in container.decode(video=0):
            frames.append(frame.to_ndarray(format="rgb24"))
            if len(frames) == 12:
                return frames


def widened(frame: np.ndarray) -> np.ndarray:
    """640x512: a non-square frame, which the tracker crops around the face."""
    return cv2.copyMakeBorder(frame, 0, 0, 64, 64, cv2.BORDER_CONSTANT, value=(90, 90, 90))


def blank(shape=(512, 640, 3)) -> np.ndarray:
    return np.full(shape, 90, np.uint8)


def metrics(server) -> dict[str, float]:
    text = urllib.request.urlopen(server.metrics_url, timeout=5).read().decode()
    return {name: float(value) for name, value in
            (line.rsplit(" ", 1) for line in text.splitlines() if line.startswith("liveportrait_"))}


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, 120))


async def status_of(stub, messages: list[pb.LiveRequest]) -> tuple[grpc.StatusCode, str, int]:
    """A raw stream of ``messages`` (sent at once): its status, details and the frames answered before it ended."""
    async def requests():
        for message in messages:
            yield message
        await asyncio.sleep(30)  # keep the stream open: the server ends it

    call = stub.AnimateStream(requests())
    answered = 0
    try:
        async for response in call:
            answered += response.HasField("frame")
    except grpc.aio.AioRpcError as exc:
        return exc.code(), exc.details(), answered
    return await call.code(), await call.details(), answered


@pytest.mark.triton
def test_frames_in_order_with_their_timestamps(server, faces):
    before = metrics(server)

    async def main():
        async with AsyncPortraitClient(server.target) as client:
            async with client.live(SOURCE, fps=10) as stream:
                assert (stream.started.width, stream.started.height) == (600, 704)  # s0.jpg, pasted back
                assert stream.started.max_fps == 30 and stream.started.idle_timeout_seconds == IDLE_S
                results = []
                for i, frame in enumerate(faces[:6]):
                    stream.send(frame, capture_time_us=1_000_000 + 40_000 * i, sequence=100 + i)
                    results.append(await anext(stream))  # each answer comes before the next frame is sent
                await stream.close()
                assert [r async for r in stream] == []  # the call ended with OK
            return results

    results = run(main())
    assert [r.sequence for r in results] == list(range(100, 106))
    assert [r.capture_time_us for r in results] == [1_000_000 + 40_000 * i for i in range(6)]
    assert [r.frames_received for r in results] == list(range(1, 7))  # frame i was answered before i + 1 arrived
    assert all(r.face_found and r.frames_dropped == 0 for r in results)
    assert all(r.rgb().shape == (704, 600, 3) for r in results)
    for r in results:
        assert {"queue", "decode", "detect", "motion", "keypoints", "render", "paste_back", "encode"} <= set(r.timings)
        assert sum(v for k, v in r.timings.items()) <= r.server_seconds + 1e-3
    after = metrics(server)
    key = 'liveportrait_live_frames_total{outcome="rendered"}'
    assert after[key] - before.get(key, 0) == 6
    assert after["liveportrait_live_frame_latency_seconds_count"] - before.get(
        "liveportrait_live_frame_latency_seconds_count", 0) == 6
    assert after["liveportrait_live_streams"] == 0


@pytest.mark.triton
def test_overload_drops_stale_frames_with_bounded_latency_and_cancel_frees_the_stream(server, faces):
    sent = 36

    async def main():
        async with AsyncPortraitClient(server.target) as client:
            async with client.live(SOURCE, fps=30, input_format="i420") as stream:
                async def send():
                    for i in range(sent):  # 30 fps: several times faster than the tiny profile renders on a CPU
                        stream.send(faces[i % len(faces)])
                        await asyncio.sleep(1 / 30)
                sender = asyncio.create_task(send())
                results = [await anext(stream)]
                while not (sender.done() and results[-1].sequence == sent - 1):  # the last frame is never dropped
                    results.append(await anext(stream))
                stream.send(faces[0])  # the stream is still alive
                results.append(await anext(stream))
            overloaded = stream.stats

            stream = client.live(SOURCE, fps=10)
            await stream.start()
            stream.send(faces[0])
            await anext(stream)
            open_streams = metrics(server)["liveportrait_live_streams"]
            stream.send(faces[1])
            stream.cancel()  # mid-stream
            for _ in range(50):
                if metrics(server)["liveportrait_live_streams"] == 0:
                    break
                await asyncio.sleep(0.1)
            return results, overloaded, open_streams

    results, stats, open_streams = run(main())
    assert stats.sent + stats.client_dropped == sent + 1
    last = results[-1]
    assert last.frames_dropped > 0, "frames sent faster than they render must be dropped"
    assert last.frames_received == stats.sent
    assert len(results) + last.frames_dropped == last.frames_received  # every frame answered or dropped
    assert [r.sequence for r in results] == sorted(r.sequence for r in results)
    processing = [r.server_seconds - r.timings["queue"] for r in results]
    # dropping, not queueing: a frame waits at most while the previous one is processed
    assert max(r.timings["queue"] for r in results) <= max(processing) + 0.5
    assert max(r.server_seconds for r in results) <= 2 * max(processing) + 0.5
    assert open_streams == 1
    assert metrics(server)["liveportrait_live_streams"] == 0, "a cancelled stream must be freed at once"


@pytest.mark.triton
def test_tracking_loss_and_return_and_a_stream_that_waits_for_a_face(server, faces):
    pattern = [False, False, True, True, False, True, True]  # blank frames before the first face and in between

    async def main():
        async with AsyncPortraitClient(server.target) as client:
            async with client.live(SOURCE, output_format="i420", input_format="i420", source_max_dim=512,
                                   smoothing=True) as stream:
                assert (await stream.send_reference(blank())).face_found is False
                results, k = [], 0
                for face in pattern:
                    stream.send(widened(faces[k]) if face else blank())
                    k += face
                    results.append(await anext(stream))
                reference = await stream.send_reference(widened(faces[0]))
                stream.send(widened(faces[0]))
                after_reference = await anext(stream)
            return stream.started, results, reference, after_reference

    started, results, reference, after_reference = run(main())
    assert [r.face_found for r in results] == pattern
    for r in results:
        if r.face_found:
            assert (r.width, r.height) == (started.width, started.height)
            assert len(r.image) == r.width * r.height * 3 // 2 and r.rgb().shape == (r.height, r.width, 3)
        else:
            assert r.image == b""
    assert reference.face_found and after_reference.face_found


@pytest.mark.triton
def test_limits_refuse_with_status_codes_and_other_streams_go_on(server, faces):
    jpeg = frame_message(faces[0], 0, 0).data

    def frame(**fields) -> pb.LiveRequest:
        return pb.LiveRequest(frame=pb.DrivingFrame(**fields))

    setup = pb.LiveRequest(setup=live_setup(SOURCE))

    async def main():
        async with AsyncPortraitClient(server.target) as client:
            stub = pb_grpc.PortraitAnimatorStub(client.channel)
            steady = client.live(SOURCE, fps=5)  # a stream that keeps going through all of this
            await steady.start()
            stop = asyncio.Event()

            async def keep_sending():
                while not stop.is_set():
                    steady.send(faces[0])
                    await asyncio.sleep(0.2)
                await steady.close()

            async def keep_reading():
                return [r async for r in steady]

            sender, reader = asyncio.create_task(keep_sending()), asyncio.create_task(keep_reading())
            idle = asyncio.create_task(status_of(stub, [setup]))  # a setup, then nothing
            await asyncio.sleep(0.5)
            outcomes = {}
            async with client.live(SOURCE) as third:  # the third stream: the limit
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await client.live(SOURCE).start()
                outcomes["fourth stream"] = refused.value.code()
                third.send(faces[1])
                assert (await anext(third)).face_found
            too_fast = [frame(data=jpeg, sequence=i) for i in range(60)]
            cases = {
                "declared fps": [pb.LiveRequest(setup=live_setup(SOURCE, fps=60))],
                "frames too fast": [setup, *too_fast],
                "oversized frame": [setup, frame(data=b"\xff" * (4 * 1024 * 1024 + 1))],
                "frame too large": [setup, frame(data=bytes(2048 * 64 * 3 // 2), format=pb.FRAME_I420, width=2048,
                                                 height=64)],
                "not an image": [setup, frame(data=b"not a jpeg at all")],
                "I420 of the wrong size": [setup, frame(data=bytes(100), format=pb.FRAME_I420, width=64, height=64)],
                "a second setup": [setup, setup],
            }
            for name, messages in cases.items():
                outcomes[name] = (await status_of(stub, messages))[0]
            outcomes["idle stream"] = (await idle)[0]
            stop.set()
            await sender
            return outcomes, await reader

    started = time.monotonic()
    outcomes, steady_results = run(main())
    assert outcomes == {
        "fourth stream": grpc.StatusCode.RESOURCE_EXHAUSTED,
        "declared fps": grpc.StatusCode.INVALID_ARGUMENT,
        "frames too fast": grpc.StatusCode.RESOURCE_EXHAUSTED,
        "oversized frame": grpc.StatusCode.INVALID_ARGUMENT,
        "frame too large": grpc.StatusCode.INVALID_ARGUMENT,
        "not an image": grpc.StatusCode.INVALID_ARGUMENT,
        "I420 of the wrong size": grpc.StatusCode.INVALID_ARGUMENT,
        "a second setup": grpc.StatusCode.INVALID_ARGUMENT,
        "idle stream": grpc.StatusCode.DEADLINE_EXCEEDED,
    }
    assert time.monotonic() - started >= IDLE_S
    assert len(steady_results) >= 3 and all(r.face_found for r in steady_results)
    assert metrics(server)["liveportrait_live_streams"] == 0


@pytest.mark.triton
def test_live_cli_plays_a_video_as_a_camera(server, tmp_path, capsys):
    driving = clip(EXAMPLES / "driving" / "d0.mp4", tmp_path / "d0-short.mp4", frames=8, audio=False)
    assert cli(["live", "--server", server.target, "--source", str(SOURCE), "--driving", str(driving),
                "--fps", "5", "-o", str(tmp_path / "live.mp4")]) == 0
    printed = capsys.readouterr().out
    assert "latency capture -> animated frame: p50" in printed and "achieved" in printed and "drop rate" in printed
    with av.open(str(tmp_path / "live.mp4")) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert 1 <= len(frames) <= 8 and frames[0].shape == (704, 600, 3)
    assert cli(["live", "--server", server.target, "--source", str(SOURCE), "--camera", "0", "--driving",
                str(driving)]) == 1  # one of the two


def test_frame_slot_keeps_the_newest_frame_and_the_rate_limit_allows_a_one_second_burst():
    async def main():
        slot = FrameSlot()
        for i in range(3):
            slot.put(Arrival(pb.DrivingFrame(sequence=i), 0.0))
        slot.put(Arrival(pb.DrivingFrame(sequence=9), 0.0, reference=True))
        first, second = await slot.take(1), await slot.take(1)
        empty = await slot.take(0.01)
        slot.close()
        return slot, first, second, empty, await slot.take(1)

    slot, first, second, empty, end = asyncio.run(main())
    assert (first.reference, first.frame.sequence) == (True, 9)  # a reference goes first, never dropped
    assert (second.frame.sequence, slot.received, slot.dropped) == (2, 3, 2)
    assert empty is None and end is not None and not isinstance(end, Arrival)
    now = [0.0]
    rate = FrameRate(10, clock=lambda: now[0])
    assert sum(rate.admit() for _ in range(15)) == 10  # one second's frames at once
    now[0] = 0.5
    assert sum(rate.admit() for _ in range(15)) == 5


def test_a_decoded_cameras_i420_planes_go_as_they_are_or_as_a_jpeg_of_the_same_picture():
    """What a video decoder (the gateway's camera) gives: no colour conversion for i420, one for jpeg."""
    rgb = cv2.GaussianBlur(np.random.default_rng(0).integers(0, 256, (64, 96, 3), np.uint8), (9, 9), 3)
    planes = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420)
    raw = frame_message(planes, 40_000, 7, input_format="i420")
    assert (raw.format, raw.width, raw.height, raw.data) == (pb.FRAME_I420, 96, 64, planes.tobytes())
    assert (raw.capture_time_us, raw.sequence) == (40_000, 7)
    jpeg = frame_message(planes, 0, 0, input_format="jpeg", jpeg_quality=95)
    decoded = cv2.cvtColor(cv2.imdecode(np.frombuffer(jpeg.data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    assert jpeg.format == pb.FRAME_ENCODED and np.abs(decoded.astype(int) - rgb).mean() < 3
    with pytest.raises(ValueError, match="not a frame of even sides"):
        frame_message(planes[:-1], 0, 0, input_format="i420")


def test_a_session_ends_at_its_length_limit_and_when_the_server_drains():
    from types import SimpleNamespace

    from orchestrator.errors import DeadlineExceeded, Unavailable
    from orchestrator.live import LiveSession
    from orchestrator.metrics import Metrics
    from orchestrator.pipeline.context import uncounted

    class Animator:  # answers at once (no Triton)
        ctx = SimpleNamespace(frames_rendered=uncounted)

        async def prepare(self):
            return pb.LiveStarted(width=512, height=512)

        async def frame(self, arrival):
            return pb.LiveFrame(sequence=arrival.frame.sequence, face_found=True, image=b"x")

    async def camera():
        for i in range(1000):
            yield pb.LiveRequest(frame=pb.DrivingFrame(data=frame_message(np.zeros((32, 32, 3), np.uint8), 0, i).data,
                                                       sequence=i))
            await asyncio.sleep(0.02)

    def limits(session_s: float):
        return SimpleNamespace(live_max_session_s=session_s, live_idle_timeout_s=5.0, live_max_fps=60.0,
                               live_max_frame_bytes=1 << 20, live_max_frame_side=64)

    async def run_session(session_s: float, draining=lambda: False):
        answered = 0
        try:
            async for response in LiveSession(Animator(), limits(session_s), Metrics(), draining).run(camera()):
                answered += response.HasField("frame")
        except (DeadlineExceeded, Unavailable) as exc:
            return type(exc), answered
        return None, answered

    started = time.monotonic()
    ended, answered = asyncio.run(run_session(0.4))
    assert ended is DeadlineExceeded and answered >= 5 and time.monotonic() - started < 2
    flag = {"draining": False}

    async def drain_soon():
        await asyncio.sleep(0.3)
        flag["draining"] = True

    async def main():
        asyncio.get_running_loop().create_task(drain_soon())
        return await run_session(60, lambda: flag["draining"])

    ended, answered = asyncio.run(main())
    assert ended is Unavailable and answered >= 5
