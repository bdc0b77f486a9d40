"""AnimatePortrait scenarios built from the protos: template-driven short clips, video-driven clips and
single-image edits, and the streaming call the load engine runs.

Inputs come from the shared example media (``../shared/examples`` next to the repository); clips are cut to
``frames`` frames so that one call costs a known amount of rendering.
"""
from __future__ import annotations

import io
import pickle
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import grpc
import numpy as np

from protos.liveportrait.v1 import portrait_animator_pb2 as pb
from protos.liveportrait.v1 import portrait_animator_pb2_grpc as pb_grpc

from .stats import OK, Outcome

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = REPO_ROOT.parent / "shared" / "examples"
CHUNK_BYTES = 1 << 20
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


@dataclass(frozen=True)
class Payload:
    """What one call sends: the setup message and the driving video's chunks (empty unless video-driven)."""

    setup: pb.AnimateSetup
    chunks: tuple[bytes, ...] = ()

    def requests(self):
        yield pb.AnimateRequest(setup=self.setup)
        for chunk in self.chunks:
            yield pb.AnimateRequest(driving_chunk=chunk)


class _NumpyOnly(pickle.Unpickler):
    """Official templates are pickles of dicts of numpy arrays; refuse anything else."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar")}

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing {module}.{name} in a motion template pickle")
        return super().find_class(module, name)


def official_template(path: Path, frames: int) -> pb.MotionTemplate:
    """The first ``frames`` frames of an official LivePortrait .pkl template as a wire MotionTemplate."""
    with open(path, "rb") as f:
        data = _NumpyOnly(f).load()
    motion = data["motion"][:frames]
    out = []
    for m in motion:
        out.append(pb.MotionFrame(scale=float(np.asarray(m["scale"]).reshape(-1)[0]),
                                  rotation=np.asarray(m["R"], np.float32).reshape(-1).tolist(),
                                  exp=np.asarray(m["exp"], np.float32).reshape(-1).tolist(),
                                  t=np.asarray(m["t"], np.float32).reshape(-1).tolist()))
    fps = Fraction(data.get("output_fps", 25)).limit_denominator(1001)
    return pb.MotionTemplate(format_version=1, fps=pb.FrameRate(num=fps.numerator, den=fps.denominator),
                             n_frames=len(out), frames=out, origin=f"load test: {path.name}[:{frames}]")


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


def build_payload(scenario: Scenario) -> Payload:
    source = scenario.source.read_bytes()
    if scenario.name == "template":
        return Payload(pb.AnimateSetup(source_image=source,
                                       driving_template=official_template(scenario.template, scenario.frames)))
    if scenario.name == "image":
        return Payload(pb.AnimateSetup(source_image=source, driving_image=scenario.image.read_bytes()))
    if scenario.name == "video":
        video = cut_video(scenario.video, scenario.frames)
        chunks = tuple(video[i:i + CHUNK_BYTES] for i in range(0, len(video), CHUNK_BYTES))
        setup = pb.AnimateSetup(source_image=source, driving_video=pb.DrivingVideo(
            size_bytes=len(video), filename=f"{scenario.video.stem}-{scenario.frames}f.mp4"))
        return Payload(setup, chunks)
    raise ValueError(f"unknown scenario {scenario.name!r}; expected one of {', '.join(NAMES)}")


CHANNEL_OPTIONS = (
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", -1),
    ("grpc.lb_policy_name", "round_robin"),  # several orchestrators behind one dns:/// or ipv4: target
)


def open_channel(target: str) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)


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
