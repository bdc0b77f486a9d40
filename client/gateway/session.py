"""One peer connection <-> one ``AnimateStream``. A driver turns the peer's incoming track into what the stream is sent
and the stream's answers into the outgoing tracks: ``CameraDriver`` here (the peer's camera frames are the driving
frames, the animated frames go back on an outgoing video track), ``voice.VoiceDriver`` for a microphone. What follows
is the camera mode's; ``voice`` and ``playout`` say the voice mode's.

Nothing queues: the driver forwards at most ``fps`` frames a second (the rate declared in the stream's setup; a
faster camera's extra frames are dropped), ``LiveStream.send`` keeps one frame waiting (a newer replaces it), the
orchestrator keeps one (the same), and the outgoing track holds one animated frame for the encoder (a newer replaces
it). Each dropped frame is counted where it was dropped (``liveportrait_gateway_frames_dropped_total{where}``).

Timestamps: an animated frame's pts is its driving frame's pts (90 kHz, as the gateway received it) less the first
animated frame's, so the output keeps the camera's timing and starts at 0. When the peer opens a data channel named
``timing``, each animated frame is announced there as JSON before it is sent: ``{"in_pts", "out_pts", "sequence",
"server_ms", "gateway_ms", "dropped"}``; a peer that knows the pts its own frames left with (relative to its first
frame, as WebRTC receivers see them) matches each displayed frame to the frame it captured: glass-to-glass latency.

The session ends (and frees its stream on the orchestrator at once, by cancelling the call) when the peer connection
closes or fails, the peer's track ends, the stream ends (the orchestrator's limits, a draining replica), the session
reaches ``max_seconds``, ICE does not connect within ``connect_timeout_s``, or ``DELETE /whip/{id}``.
"""
from __future__ import annotations

import asyncio
import fractions
import json
import logging
import math
import time
from typing import Callable

import av
import numpy as np
from aiortc import MediaStreamTrack, RTCPeerConnection
from aiortc.mediastreams import MediaStreamError

from protos.liveportrait.v1 import portrait_animator_pb2 as pb

from ..live import LiveStream
from ..live_stats import LiveResult
from .metrics import GatewayMetrics

log = logging.getLogger("liveportrait.gateway")
CLOCK_RATE = 90_000
TIME_BASE = fractions.Fraction(1, CLOCK_RATE)


class AnimatedTrack(MediaStreamTrack):
    """An outgoing track: the newest frame not yet taken by the encoder (one; a newer one replaces it)."""

    def __init__(self, kind: str = "video"):
        super().__init__()
        self.kind = kind
        self._frame: av.VideoFrame | None = None
        self._ready = asyncio.Event()

    def put(self, frame: av.VideoFrame) -> bool:
        """Offer ``frame``; True when it replaced one the encoder had not taken (dropped)."""
        replaced = self._frame is not None
        self._frame = frame
        self._ready.set()
        return replaced

    def stop(self) -> None:
        super().stop()
        self._ready.set()

    async def recv(self) -> av.VideoFrame:
        while self._frame is None:
            if self.readyState != "live":
                raise MediaStreamError
            self._ready.clear()
            await self._ready.wait()
        frame, self._frame = self._frame, None
        return frame


class Fanout:
    """One of a session's outgoing tracks to each of its consumers: the peer's own connection (when its offer
    receives that kind) and WHEP viewers. A reader takes each frame of ``source`` as soon as it is ready and offers it
    to every consumer's ``AnimatedTrack`` (one frame each: a newer one replaces it, ``on_drop`` counts that); with no
    consumer the frames are let go. Each consumer after the first gets a copy: the encoders run in threads and PyAV
    changes a frame as it encodes it (its timestamps, its picture type)."""

    def __init__(self, source: MediaStreamTrack, on_drop: Callable[[], None] | None = None):
        self.source, self.on_drop = source, on_drop
        self.consumers: list[AnimatedTrack] = []

    def subscribe(self) -> AnimatedTrack:
        track = AnimatedTrack(self.source.kind)
        self.consumers.append(track)
        return track

    async def run(self) -> None:
        """Until the source ends; then every consumer's track ends too."""
        try:
            while True:
                frame = await self.source.recv()
                self.consumers = [t for t in self.consumers if t.readyState == "live"]
                for index, track in enumerate(self.consumers):
                    if track.put(frame if index == 0 else copied(frame)) and self.on_drop is not None:
                        self.on_drop()
        except MediaStreamError:
            for track in self.consumers:
                track.stop()


def copied(frame: av.VideoFrame | av.AudioFrame) -> av.VideoFrame | av.AudioFrame:
    """A frame of its own with the same picture or samples and timing."""
    if isinstance(frame, av.AudioFrame):
        copy = av.AudioFrame.from_ndarray(frame.to_ndarray(), format=frame.format.name, layout=frame.layout.name)
        copy.sample_rate = frame.sample_rate
    else:
        copy = av.VideoFrame.from_ndarray(frame.to_ndarray(), format=frame.format.name)
    copy.pts = frame.pts
    if frame.time_base is not None:
        copy.time_base = frame.time_base
    return copy


class Pacer:
    """At most ``fps`` frames a second, on average, to forward; a frame up to half an interval early is admitted.

    A camera at exactly the declared rate delivers its frames with jitter (capture, encoder, network, jitter buffer):
    a plain one-frame bucket would refuse every frame that comes a little early, about a third of them, and the
    renderer would wait for the next one. This is the virtual-scheduling form of a token bucket (GCRA): each admitted
    frame moves the next one's due time an interval further; a frame is refused only when it comes more than half an
    interval before it is due. Over any span, admitted frames <= span x fps + 1.5.
    """

    def __init__(self, fps: float, clock=time.monotonic):
        self.interval, self.clock = 1.0 / fps, clock
        self.due = -math.inf  # when the next frame is due (the first is due at once)

    def admit(self) -> bool:
        now = self.clock()
        if now < self.due - self.interval / 2:
            return False
        self.due = max(self.due, now) + self.interval
        return True


def pts_90k(frame: av.VideoFrame) -> int:
    return int(frame.pts * frame.time_base * CLOCK_RATE) if frame.pts is not None and frame.time_base else 0


def driving_picture(frame: av.VideoFrame) -> np.ndarray:
    """A camera frame for ``LiveStream.send``: its I420 planes as decoded (the usual case; no colour conversion here,
    none at all with ``--input-format i420``), else RGB."""
    if frame.format.name == "yuv420p" and frame.width % 2 == 0 and frame.height % 2 == 0:
        return frame.to_ndarray()
    return frame.to_ndarray(format="rgb24")


def video_frame(result: LiveResult) -> av.VideoFrame:
    """The animated frame as a video frame: I420 planes as they are; JPEG decoded and, of even sides, converted to
    I420 here once rather than by each consumer's encoder."""
    if result.format == pb.FRAME_I420:
        planes = np.frombuffer(result.image, np.uint8).reshape(result.height * 3 // 2, result.width)
        return av.VideoFrame.from_ndarray(planes, format="yuv420p")
    frame = av.VideoFrame.from_ndarray(result.rgb(), format="rgb24")
    return frame.reformat(format="yuv420p") if frame.width % 2 == 0 and frame.height % 2 == 0 else frame


class CameraDriver:
    """Camera mode: the peer's video frames, paced to the stream's rate, sent as driving frames; each animated frame
    goes back at once on ``AnimatedTrack`` with its driving frame's timing."""

    kind = "video"

    def __init__(self, stream: LiveStream, fps: float, metrics: GatewayMetrics):
        self.stream, self.metrics = stream, metrics
        self.pacer = Pacer(fps)
        self.pts: dict[int, int] = {}  # sequence -> the driving frame's pts (90 kHz), until answered
        self.video = AnimatedTrack()
        self.outgoing = [self.video]
        self.announce = None  # set by the session: (message dict) -> None, the timing channel
        self._first_pts: int | None = None
        self._last_out = -1

    async def run(self, track: MediaStreamTrack) -> None:
        """Until the peer's track ends (MediaStreamError)."""
        while True:
            frame = await track.recv()  # MediaStreamError: the track ended
            self.metrics.frames.labels("in").inc()
            if not self.pacer.admit():
                self.metrics.dropped.labels("rate").inc()
                continue
            picture = await asyncio.to_thread(driving_picture, frame)
            before = self.stream.stats.client_dropped
            sequence = self.stream.send(picture)  # the capture time: now, on the gateway's clock
            self.pts[sequence] = pts_90k(frame)
            self.metrics.frames.labels("driving").inc()
            self.metrics.dropped.labels("client").inc(self.stream.stats.client_dropped - before)

    def answered(self, sequence: int) -> int | None:
        """The pts of the driving frame ``sequence``; older ones (dropped on the way) are forgotten."""
        for older in [s for s in self.pts if s < sequence]:
            del self.pts[older]
        return self.pts.pop(sequence, None)

    def forward(self, result: LiveResult, frame: av.VideoFrame | None) -> None:
        """An animated frame, sent at once with its driving frame's pts less the first one's."""
        in_pts = self.answered(result.sequence)
        if frame is None or in_pts is None:
            return  # no face in the driving frame: nothing to show
        if self._first_pts is None:
            self._first_pts = in_pts
        out_pts = max(in_pts - self._first_pts, self._last_out + 1)
        self._last_out = out_pts
        frame.pts, frame.time_base = out_pts, TIME_BASE
        self.metrics.latency.observe(result.latency_s)
        if self.announce is not None:
            self.announce({"in_pts": in_pts, "out_pts": out_pts, "sequence": result.sequence,
                           "server_ms": round(result.server_seconds * 1000, 1),
                           "gateway_ms": round(result.latency_s * 1000, 1), "dropped": result.frames_dropped})
        self.metrics.frames.labels("out").inc()
        self.video.put(frame)  # the session's Fanout takes it at once, for each consumer

    async def finish(self) -> None:
        """The stream ended: nothing waits to be sent (the last frame went out as it came)."""

    def stop(self) -> None:
        self.video.stop()


class GatewaySession:
    """One peer connection and its live stream: ``attach`` after the offer was set (the outgoing tracks the peer
    receives join the offer's transceivers), ``start`` after the answer was made; ``close`` is idempotent (and
    ends the session's WHEP viewers, ``viewers``)."""

    def __init__(self, session_id: str, pc: RTCPeerConnection, channel, stream: LiveStream, driver,
                 metrics: GatewayMetrics, on_end: Callable[["GatewaySession"], None], max_seconds: float,
                 connect_timeout_s: float = 30.0, key: str | None = None, portrait_id: str | None = None):
        self.id = session_id
        self.key = key  # the API key the session was started with (its viewers present the same)
        self.portrait_id = portrait_id
        self.started = time.monotonic()
        self.pc = pc
        self.channel = channel  # the session's own gRPC channel (it carries the caller's API key)
        self.stream = stream
        self.metrics = metrics
        self.on_end = on_end
        self.max_seconds = max_seconds
        self.connect_timeout_s = connect_timeout_s
        self.driver = driver  # CameraDriver or voice.VoiceDriver
        driver.announce = self._announce
        self.fanouts = [Fanout(t, self._output_dropped if t.kind == "video" else None) for t in driver.outgoing]
        self.viewers: dict = {}  # viewer id -> viewers.Viewer
        self.incoming: MediaStreamTrack | None = None
        self.timing = None  # the peer's "timing" data channel
        self.closed = False
        self.reason: str | None = None
        self._tasks: list[asyncio.Task] = []
        self._unused: list[MediaStreamTrack] = []  # the peer's other tracks: read and let go (never queued)
        self._server_dropped = 0
        pc.on("track", self._on_track)
        pc.on("datachannel", self._on_datachannel)
        pc.on("connectionstatechange", self._on_state)

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == self.driver.kind and self.incoming is None:
            self.incoming = track
        else:
            self._unused.append(track)

    def _output_dropped(self) -> None:
        self.metrics.dropped.labels("output").inc()

    @property
    def kinds(self) -> set[str]:
        """What the session sends: video, and audio in voice mode."""
        return {f.source.kind for f in self.fanouts}

    def subscribe(self, kinds: set[str]) -> list[MediaStreamTrack]:
        """A new consumer's tracks of those ``kinds`` (the peer's own, a viewer's)."""
        return [f.subscribe() for f in self.fanouts if f.source.kind in kinds]

    def attach(self, kinds: set[str]) -> None:
        """The outgoing tracks of the ``kinds`` the peer receives, each on the offer's transceiver of its kind
        (sendrecv or recvonly there); none for an ingest-only offer (sendonly: watched over WHEP, if at all)."""
        for track in self.subscribe(kinds):
            self.pc.addTrack(track)

    def _on_datachannel(self, channel) -> None:
        if channel.label == "timing":
            self.timing = channel

    def _announce(self, message: dict) -> None:
        if self.timing is not None and self.timing.readyState == "open":
            self.timing.send(json.dumps(message))

    async def _on_state(self) -> None:
        if self._tasks and self.pc.connectionState in ("failed", "closed"):  # a session refused at its offer: not one
            await self.close(f"the peer connection {self.pc.connectionState}", "peer")

    def start(self) -> None:
        """After the answer: drive the stream, send its frames back, keep the session's time limits."""
        self._tasks = [asyncio.create_task(self._drive()), asyncio.create_task(self._send_back()),
                       asyncio.create_task(self._limits()), *(asyncio.create_task(drain(t)) for t in self._unused),
                       *(asyncio.create_task(f.run()) for f in self.fanouts)]

    async def _drive(self) -> None:
        try:
            await self.driver.run(self.incoming)
        except MediaStreamError:
            await self.close("the peer's track ended", "peer")

    async def _send_back(self) -> None:
        error = None
        try:
            async for result in self.stream:
                self._server_drops(result)
                self.driver.forward(result, await asyncio.to_thread(video_frame, result) if result.image else None)
        except Exception as exc:  # the stream ended with the orchestrator's status
            error = exc
        code = getattr(error, "code", None)
        if error is None:
            await self.driver.finish()
        await self.close(f"the stream ended: {code().name}: {error.details()}" if callable(code) else
                         "the stream ended" if error is None else f"the stream failed: {error}", "stream")

    def _server_drops(self, result: LiveResult) -> None:
        self.metrics.dropped.labels("server").inc(result.frames_dropped - self._server_dropped)
        self._server_dropped = result.frames_dropped

    async def _limits(self) -> None:
        if not await connected(self.pc, self.connect_timeout_s):
            await self.close(f"ICE did not connect within {self.connect_timeout_s:g} s", "ice")
            return
        await asyncio.sleep(max(0.0, self.max_seconds - (time.monotonic() - self.started)))
        await self.close(f"the session reached the gateway's limit of {self.max_seconds:g} s", "limit")

    async def close(self, reason: str, kind: str) -> None:
        """Cancel the stream (the orchestrator frees it at once), stop the tracks, close the peer connection.
        ``kind`` (peer, stream, limit, ice, deleted, shutdown) labels the metric, ``reason`` the log line."""
        if self.closed:
            return
        self.closed, self.reason = True, reason
        log.info("session %s ended: %s", self.id, reason)
        self.metrics.ended.labels(kind).inc()
        self.stream.cancel()
        self.driver.stop()
        self.on_end(self)
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        for track in [t for f in self.fanouts for t in f.consumers]:
            track.stop()
        await asyncio.gather(*(v.close("the session it watched ended") for v in list(self.viewers.values())))
        await self.pc.close()
        await self.channel.close()


async def connected(pc: RTCPeerConnection, timeout_s: float) -> bool:
    """Whether ``pc`` connects (ICE and DTLS) within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while pc.connectionState != "connected":
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.1)
    return True


async def drain(track: MediaStreamTrack) -> None:
    """Read a track nobody uses until it ends (aiortc queues a track's frames until they are read)."""
    try:
        while True:
            await track.recv()
    except MediaStreamError:
        pass
