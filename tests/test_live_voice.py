"""AnimateStream's voice mode through the real tritonserver (tiny profile with the audio models) and the orchestrator:
a live voice in chunks, one animated frame per 1/25 s of audio out with its timestamp, the same seed giving the same
frames, cancellation freeing the stream, bad chunks refused in words, and ``liveportrait live --audio``."""
from __future__ import annotations

import asyncio
import json
import math
import re
import time
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pytest

from audio_files import chirp, write_audio
from client.api import AsyncPortraitClient
from client.cli import main as cli
from client.live import audio_messages, live_setup
from orchestrator.embedded import OrchestratorProcess
from orchestrator.live.voice import AudioChunks
from orchestrator.errors import InvalidRequest
from protos.liveportrait.v1 import portrait_animator_pb2 as pb
from protos.liveportrait.v1 import portrait_animator_pb2_grpc as pb_grpc

EXAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "examples"
BUILD = Path(__file__).resolve().parents[1] / "build" / "test"
SOURCE = EXAMPLES / "source" / "s0.jpg"
RATE = 22050


@pytest.fixture(scope="module")
def server(audio_triton_server):
    with OrchestratorProcess(audio_triton_server.grpc_url, BUILD / "orchestrator-voice.log",
                             extra_args=("--live-idle-timeout", "10")) as process:
        yield process


def live_streams(server) -> float:
    text = urllib.request.urlopen(server.metrics_url, timeout=5).read().decode()
    return next(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                if line.startswith("liveportrait_live_streams "))


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, 300))


async def speak(server, samples: np.ndarray, chunk_s: float = 0.1, drop_late_frames: bool = False,
                **voice) -> tuple[pb.LiveStarted, list]:
    """The whole voice sent in chunks (as fast as the stream takes them), the stream closed: its started message and
    every result."""
    async with AsyncPortraitClient(server.target) as client:
        async with client.live(SOURCE, voice=voice, drop_late_frames=drop_late_frames) as stream:
            step = int(RATE * chunk_s)
            for i in range(0, len(samples), step):
                stream.send_audio(samples[i:i + step], RATE)
            await stream.close()
            return stream.started, [r async for r in stream]


@pytest.mark.triton
def test_a_voice_gives_one_frame_per_25th_of_a_second_with_its_time(server):
    seconds = 1.3
    started, results = run(speak(server, chirp(seconds, RATE), sampling_steps=2, seed=4))
    frames = math.ceil(seconds * 25)  # 33
    assert started.audio_lookahead_seconds == pytest.approx(0.885) and started.max_fps == 25
    assert [r.sequence for r in results] == list(range(frames))
    assert [r.capture_time_us for r in results] == [k * 40_000 for k in range(frames)]  # k/25 s of the audio
    assert all(r.face_found and r.rgb().shape == (started.height, started.width, 3) for r in results)
    images = {r.image for r in results}
    assert len(images) > frames // 2, "the voice moves the portrait"
    assert {"keypoints", "render", "paste_back", "encode"} <= set(results[0].timings)
    assert live_streams(server) == 0


@pytest.mark.triton
def test_the_same_seed_gives_the_same_frames_and_chunking_does_not_matter(server):
    voice = chirp(0.7, RATE)
    a = run(speak(server, voice, chunk_s=0.1, seed=9, sampling_steps=2))[1]
    b = run(speak(server, voice, chunk_s=0.37, seed=9, sampling_steps=2))[1]
    c = run(speak(server, voice, chunk_s=0.1, seed=10, sampling_steps=2))[1]
    assert len(a) == len(b) == len(c) == math.ceil(0.7 * 25)
    assert [r.image for r in a] == [r.image for r in b]
    assert [r.image for r in a] != [r.image for r in c]


@pytest.mark.triton
def test_real_time_pacing_skips_what_a_server_slower_than_the_voice_cannot_animate_in_time(server, audio_triton_server):
    """8 s of voice sent at once, as to a server far slower than the voice: the stream goes on (no limit reached);
    frames more than a block behind the audio received are skipped, and so is the oldest audio waiting (never
    animated: fewer motion blocks than the voice has); every skipped frame is counted, and the newest frames, whose
    audio came last, are all rendered at their times."""
    seconds, frames = 8.0, 200
    calls = lmdm_executions(audio_triton_server)
    results = run(speak(server, chirp(seconds, RATE), chunk_s=0.5, drop_late_frames=True, sampling_steps=1))[1]
    sequences = [r.sequence for r in results]
    assert sequences == sorted(set(sequences)) and sequences[-1] == frames - 1
    assert len(results) < frames and results[-1].frames_dropped == frames - len(results)
    assert all(r.capture_time_us == r.sequence * 40_000 for r in results)
    tail = math.ceil((seconds - 0.885 - 0.4) * 25)  # never late: their audio is the last received
    assert set(range(tail, frames)) <= set(sequences)
    blocks = seconds / 0.4  # one motion block per 0.4 s of voice, one LMDM step each
    assert lmdm_executions(audio_triton_server) - calls < blocks / 2, "the audio skipped is not animated"


def lmdm_executions(triton) -> float:
    text = urllib.request.urlopen(triton.metrics_url, timeout=10).read().decode()
    return float(re.search(r'^nv_inference_count\{model="lmdm",version="1"\} (\S+)$', text, re.M).group(1))


@pytest.mark.triton
def test_cancelling_a_voice_stream_frees_it(server, audio_triton_server):
    async def main():
        async with AsyncPortraitClient(server.target) as client:
            stream = client.live(SOURCE, voice={"sampling_steps": 2})
            await stream.start()
            stream.send_audio(chirp(4.0, RATE), RATE)  # more than the look-ahead: frames come, more blocks wait
            first = await anext(stream)
            opened = live_streams(server)
            stream.cancel()
            for _ in range(100):
                if live_streams(server) == 0:
                    break
                await asyncio.sleep(0.1)
            return first, opened

    first, opened = run(main())
    assert first.sequence == 0 and opened == 1
    assert live_streams(server) == 0, "a cancelled voice stream must be freed at once"
    calls = lmdm_executions(audio_triton_server)
    time.sleep(1.0)
    assert lmdm_executions(audio_triton_server) == calls, "the motion's worker thread stopped with the stream"
    # the server goes on serving: a next stream gets its frames
    assert len(run(speak(server, chirp(0.2, RATE), sampling_steps=1))[1]) == 5


async def refused(server, chunks: list, voice: bool = True) -> tuple[grpc.StatusCode, str]:
    async def requests():
        setup = live_setup(SOURCE, voice=pb.AudioOptions(sampling_steps=1) if voice else None)
        yield pb.LiveRequest(setup=setup)
        for chunk in chunks:
            yield pb.LiveRequest(**{"audio" if isinstance(chunk, pb.LiveAudio) else "frame": chunk})
        await asyncio.sleep(30)  # the server ends the stream

    async with grpc.aio.insecure_channel(server.target) as channel:
        call = pb_grpc.PortraitAnimatorStub(channel).AnimateStream(requests())
        try:
            async for _ in call:
                pass
        except grpc.aio.AioRpcError as exc:
            return exc.code(), exc.details()
        return await call.code(), await call.details()


@pytest.mark.triton
@pytest.mark.parametrize("chunks, words", [
    ([pb.LiveAudio(pcm=b"", sample_rate=16000)], "has no samples"),
    ([pb.LiveAudio(pcm=np.full(160, np.nan, np.float32).tobytes(), sample_rate=16000)], "not finite"),
    ([pb.LiveAudio(pcm=np.zeros(160, np.float32).tobytes(), sample_rate=1000)], "sample_rate must be 8000 to 48000"),
    (audio_messages(np.zeros(1600, np.float32), 16000) + audio_messages(np.zeros(1600, np.float32), 22050),
     "differs from the stream's 16000 Hz"),
], ids=["empty", "nan", "rate", "rate-change"])
def test_bad_audio_chunks_are_invalid_argument_in_words(server, chunks, words):
    code, details = run(refused(server, chunks))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and words in details
    assert live_streams(server) == 0


@pytest.mark.triton
def test_audio_without_voice_mode_and_frames_in_voice_mode_are_refused(server):
    code, details = run(refused(server, audio_messages(np.zeros(160, np.float32), 16000), voice=False))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "`audio` needs setup.voice" in details
    code, details = run(refused(server, [pb.DrivingFrame(data=SOURCE.read_bytes())]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "in voice mode only `audio` messages" in details


def test_audio_chunks_resample_to_16_khz_without_seams():
    """Int16 at 8 kHz in uneven chunks -> the same 16 kHz samples as in one chunk, at twice the count."""
    samples = (chirp(0.5, 8000) * 20000).astype(np.int16)
    whole = AudioChunks()
    one = np.concatenate([whole(m) for m in audio_messages(samples, 8000, max_seconds=1.0)] + [whole.flush()])
    parts = AudioChunks()
    chunks = [parts(m) for m in audio_messages(samples, 8000, max_seconds=0.033)] + [parts.flush()]
    np.testing.assert_allclose(np.concatenate(chunks), one, atol=1e-6)
    assert abs(len(one) - 2 * len(samples)) <= 32 and one.dtype == np.float32
    with pytest.raises(InvalidRequest, match="more than one second"):
        AudioChunks()(pb.LiveAudio(pcm=np.zeros(16001, np.float32).tobytes(), sample_rate=16000))


@pytest.mark.triton
def test_live_cli_streams_a_voice_file_at_real_time_and_reports_its_latency(server, tmp_path, capsys):
    voice = write_audio(tmp_path / "speech.wav", chirp(1.0, 44100), 44100)
    out = tmp_path / "talking.mp4"
    assert cli(["live", "--server", server.target, "--source", str(SOURCE), "--audio", str(voice), "-o", str(out),
                "--audio-steps", "2", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["results"] == 25 and summary["audio_seconds"] == pytest.approx(1.0, abs=0.01)
    assert summary["first_frame_ms"] >= 600  # no frame before its audio: ~0.885 s of voice, sent at real time
    assert summary["audio_delay_ms"]["p50"] > 0
    import av
    with av.open(str(out)) as c:
        assert sum(1 for _ in c.decode(video=0)) == 25


def test_audio_waiting_beyond_the_limit_is_resource_exhausted_and_none_is_dropped():
    from orchestrator.errors import Overloaded
    from orchestrator.live.voice import AudioQueue

    async def main():
        queue = AudioQueue(max_samples=16000)
        queue.put(np.ones(10000, np.float32))
        with pytest.raises(Overloaded, match="more than 1 s of audio wait"):
            queue.put(np.ones(7000, np.float32))
        queue.put(np.full(6000, 2, np.float32))
        queue.close()
        taken = await queue.take(1.0)
        return taken, await queue.take(1.0)

    taken, end = asyncio.run(main())
    assert len(taken) == 16000 and taken[-1] == 2 and end is not None and not isinstance(end, np.ndarray)


def test_a_microphone_that_cannot_be_opened_is_refused_in_words(capsys):
    code = cli(["live", "--server", "127.0.0.1:1", "--source", str(SOURCE), "--microphone", "no-such-device"])
    assert code != 0
    assert "no microphone 'no-such-device' can be opened" in capsys.readouterr().err


@pytest.mark.triton
def test_voice_mode_on_a_server_without_the_audio_models_names_the_export_flag(triton_server):
    """The shared tiny repository is exported without ``--audio``: FAILED_PRECONDITION at the setup, in words."""
    with OrchestratorProcess(triton_server.grpc_url, BUILD / "orchestrator-voice-no-audio.log") as process:
        code, details = run(refused(process, []))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "liveportrait-export --audio" in details
