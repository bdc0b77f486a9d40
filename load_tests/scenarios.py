"""AnimatePortrait scenarios built from the protos: template-driven short clips, video-driven clips and
single-image edits, and the streaming call the load engine runs.

Inputs come from the shared example media (``../shared/examples`` next to the repository); clips are cut to
``frames`` frames so that one call costs a known amount of rendering.
"""
from __future__ import annotations

import io
import time
from dataclasses import dataclass
from pathlib import Path

import av
import grpc

from client.messages import animate_requests
from client.channel import ChannelSettings
from client.templates import read_template
from protos.liveportrait.v1 import portrait_animator_pb2 as pb
from protos.liveportrait.v1 import portrait_animator_pb2_grpc as pb_grpc

from .stats import OK, Outcome

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = REPO_ROOT.parent / "shared" / "examples"
CLIPS = REPO_ROOT / "build" / "load" / "clips"
NAMES = ("template", "video", "image")


@dataclass(frozen=True)
class Scenario:
    name: str  # template | video | image
    frames: int = 8  # clip length (template and video)
    source: Path = EXAMPLES / "source" / "s0.jpg"
    template: Path = EXAMPLES / "templates" / "wink.pkl"
    video: Path = EXAMPLES / "driving" / "d0.mp4"
    image: Path = EXAMPLES / "driving" / "d9.jpg"
    timeout_s: float = 300.0
    low_latency: bool = False  # output.low_latency: frames stream while later chunks render


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


def build_payload(scenario: Scenario, work_dir: Path = CLIPS) -> Payload:
    """The request stream of one call, built once by the client library and replayed for every call."""
    if scenario.name == "template":
        driving = short_template(scenario.template, scenario.frames)
    elif scenario.name == "image":
        driving = scenario.image
    elif scenario.name == "video":
        driving = work_dir / f"{scenario.video.stem}-{scenario.frames}f.mp4"
        driving.parent.mkdir(parents=True, exist_ok=True)
        driving.write_bytes(cut_video(scenario.video, scenario.frames))
    else:
        raise ValueError(f"unknown scenario {scenario.name!r}; expected one of {', '.join(NAMES)}")
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
