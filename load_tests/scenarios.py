"""AnimatePortrait scenarios built from the protos: template-driven short clips, video-driven clips,
single-image edits and voice-driven clips (``audio``: a sound file -> Ditto's audio-to-motion -> frames at 25 fps), and
the streaming call the load engine runs.

Inputs come from the shared example media (``../shared/examples`` next to the repository); clips are cut to
``frames`` frames so that one call costs a known amount of rendering.
"""
from __future__ import annotations

import io
import time
import wave
from dataclasses import dataclass
from pathlib import Path

import av
import grpc
import numpy as np

from client.messages import animate_requests, audio_options
from client.channel import ChannelSettings
from client.templates import read_template
from protos.liveportrait.v1 import portrait_animator_pb2 as pb
from protos.liveportrait.v1 import portrait_animator_pb2_grpc as pb_grpc

from .stats import OK, Outcome

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = REPO_ROOT.parent / "shared" / "examples"
CLIPS = REPO_ROOT / "build" / "load" / "clips"
NAMES = ("template", "video", "image")  # served by any model repository
AUDIO = "audio"  # needs the audio models (liveportrait-export --audio)
ALL_NAMES = NAMES + (AUDIO,)
AUDIO_FPS = 25  # a voice drives 25 frames per second of audio


@dataclass(frozen=True)
class Scenario:
    name: str  # template | video | image | audio
    frames: int = 8  # clip length (template, video and the generated voice: frames / 25 seconds)
    source: Path = EXAMPLES / "source" / "s0.jpg"
    template: Path = EXAMPLES / "templates" / "wink.pkl"
    video: Path = EXAMPLES / "driving" / "d0.mp4"
    image: Path = EXAMPLES / "driving" / "d9.jpg"
    timeout_s: float = 300.0
    low_latency: bool = False  # output.low_latency: frames stream while later chunks render
    audio: Path | None = None  # audio scenario: a sound file (None: a generated tone sweep of ``frames`` / 25 s)
    audio_steps: int | None = None  # audio scenario: DDIM sampling steps (None: the service's default, 50)


@dataclass(frozen=True)
class Payload:
    """What one call sends: the setup message, then the driving video's chunks (video-driven only)."""

    messages: tuple[pb.AnimateRequest, ...]

    def requests(self):
        yield from self.messages


def short_template(path: Path, frames: int) -> pb.MotionTemplate:
    """The first ``frames`` frames of a template (official .pkl, .pb or .json; the client library reads it)."""
    template = read_template(path)
    del template.frames[frames:]
    template.n_frames = len(template.frames)
    template.origin = f"load test: {path.name}[:{frames}]"
    return template


def cut_video(path: Path, frames: int) -> bytes:
    """The first ``frames`` frames of a video, re-encoded to a small H.264 MP4 in memory."""
    buffer = io.BytesIO()
    with av.open(str(path)) as src, av.open(buffer, "w", format="mp4") as dst:
        stream_in = src.streams.video[0]
        stream = dst.add_stream("libx264", rate=stream_in.average_rate or 25)
        stream.width, stream.height, stream.pix_fmt = stream_in.width, stream_in.height, "yuv420p"
        for i, frame in enumerate(src.decode(stream_in)):
            if i >= frames:
                break
            for packet in stream.encode(frame.reformat(format="yuv420p")):
                dst.mux(packet)
        for packet in stream.encode():
            dst.mux(packet)
    return buffer.getvalue()


def sweep_wav(path: Path, seconds: float, rate: int = 16000) -> Path:
    """A tone sweeping 200 -> 2000 Hz as a 16-bit mono WAV (the audio models cost the same for any sound)."""
    t = np.arange(max(1, int(round(seconds * rate)))) / rate
    phase = 2 * np.pi * (200.0 * t + 1800.0 / (2 * max(seconds, 1e-9)) * t ** 2)
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes((0.5 * np.sin(phase) * 32767).astype("<i2").tobytes())
    return path


def audio_seconds(path: Path) -> float:
    """The length of a sound file as the service decodes it."""
    with av.open(str(path)) as c:
        stream = c.streams.audio[0]
        return sum(f.samples for f in c.decode(stream)) / stream.codec_context.sample_rate


def build_payload(scenario: Scenario, work_dir: Path = CLIPS) -> Payload:
    """The request stream of one call, built once by the client library and replayed for every call."""
    if scenario.name == AUDIO:
        voice = scenario.audio or sweep_wav(work_dir / f"sweep-{scenario.frames}f.wav", scenario.frames / AUDIO_FPS)
        output = pb.OutputOptions(low_latency=True if scenario.low_latency else None)
        return Payload(tuple(animate_requests(scenario.source, voice, output=output,
                                              audio_options=audio_options(sampling_steps=scenario.audio_steps))))
    if scenario.name == "template":
        driving = short_template(scenario.template, scenario.frames)
    elif scenario.name == "image":
        driving = scenario.image
    elif scenario.name == "video":
        driving = work_dir / f"{scenario.video.stem}-{scenario.frames}f.mp4"
        driving.parent.mkdir(parents=True, exist_ok=True)
        driving.write_bytes(cut_video(scenario.video, scenario.frames))
    else:
        raise ValueError(f"unknown scenario {scenario.name!r}; expected one of {', '.join(ALL_NAMES)}")
    output = pb.OutputOptions(low_latency=True) if scenario.low_latency else None
    return Payload(tuple(animate_requests(scenario.source, driving, output=output)))


def open_channel(target: str) -> grpc.aio.Channel:
    """The client library's channel options (round_robin over several orchestrators behind one target)."""
    return grpc.aio.insecure_channel(target, options=ChannelSettings(target).options())


class AnimateCall:
    """One AnimatePortrait call per invocation; time to first result = the first video chunk."""

    def __init__(self, channel: grpc.aio.Channel, payload: Payload, timeout_s: float):
        self.stub = pb_grpc.PortraitAnimatorStub(channel)
        self.payload = payload
        self.timeout_s = timeout_s

    async def __call__(self) -> Outcome:
        started = time.perf_counter()
        first = None
        summary = None
        async for response in self.stub.AnimatePortrait(self.payload.requests(), timeout=self.timeout_s):
            event = response.WhichOneof("event")
            if event == "video" and first is None:
                first = time.perf_counter() - started
            elif event == "summary":
                summary = response.summary
        elapsed = time.perf_counter() - started
        if summary is None:
            return Outcome("CLIENT_NO_SUMMARY", elapsed, first)
        return Outcome(OK, elapsed, first, summary.frames)
