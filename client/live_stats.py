"""What a live stream measures: each animated frame as it arrives (``LiveResult``: its capture and arrival times,
the server's timings) and the stream's figures (``LiveStats``: frames sent, received and dropped, latency
percentiles, voice mode's audio delays)."""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from protos.liveportrait.v1 import portrait_animator_pb2 as pb


@dataclass
class LiveResult:
    """One animated frame (``image`` empty when the driving frame showed no face)."""

    sequence: int
    capture_time_us: int
    image: bytes
    format: int
    width: int
    height: int
    face_found: bool
    timings: dict[str, float]  # the server's seconds per stage for this frame
    server_seconds: float  # the frame's arrival at the server -> its answer
    frames_received: int  # by the server in this stream so far
    frames_dropped: int  # of those, dropped as stale
    received_us: int  # client clock when it arrived here
    audio_delay_s: float | None = None  # voice mode: arrival here - when the audio at sequence / 25 s was sent

    @classmethod
    def of(cls, frame: pb.LiveFrame, received_us: int) -> "LiveResult":
        return cls(frame.sequence, frame.capture_time_us, frame.image, frame.format, frame.width, frame.height,
                   frame.face_found, {t.stage: t.seconds for t in frame.timings}, frame.server_seconds,
                   frame.frames_received, frame.frames_dropped, received_us)

    @property
    def latency_s(self) -> float:
        """Capture -> here (the capture time on this client's clock, as ``LiveStream.send`` sets it)."""
        return (self.received_us - self.capture_time_us) / 1e6

    def rgb(self) -> np.ndarray | None:
        """The frame decoded to RGB uint8, or None without an image."""
        if not self.image:
            return None
        if self.format == pb.FRAME_I420:
            planes = np.frombuffer(self.image, np.uint8).reshape(self.height * 3 // 2, self.width)
            return cv2.cvtColor(planes, cv2.COLOR_YUV2RGB_I420)
        return cv2.cvtColor(cv2.imdecode(np.frombuffer(self.image, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def percentiles(values: list[float], points=(50, 95, 99)) -> dict[int, float]:
    return {p: float(np.percentile(values, p)) for p in points} if values else {p: float("nan") for p in points}


@dataclass
class LiveStats:
    """What one stream measured: the frames sent, the results received and their latencies."""

    sent: int = 0  # frames written to the server
    client_dropped: int = 0  # replaced on the client before the network took them
    results: int = 0  # animated frames received (with or without a face)
    no_face: int = 0
    server_dropped: int = 0  # the server's count, from the last result
    server_received: int = 0
    latencies: list[float] = field(default_factory=list)  # capture -> received here, seconds (frames with a face)
    server_seconds: list[float] = field(default_factory=list)
    render_seconds: list[float] = field(default_factory=list)
    first_us: int | None = None  # client clock of the first and last result
    last_us: int | None = None
    audio_seconds: float = 0.0  # voice mode: audio sent, its delay per frame, the first frame after the first audio
    audio_delays: list[float] = field(default_factory=list)
    first_frame_s: float | None = None

    def add(self, result: LiveResult) -> None:
        self.results += 1
        self.server_dropped, self.server_received = result.frames_dropped, result.frames_received
        self.first_us = self.first_us if self.first_us is not None else result.received_us
        self.last_us = result.received_us
        if not result.face_found:
            self.no_face += 1
            return
        if result.audio_delay_s is not None:
            self.audio_delays.append(result.audio_delay_s)
        else:
            self.latencies.append(result.latency_s)
        self.server_seconds.append(result.server_seconds)
        self.render_seconds.append(result.timings.get("render", float("nan")))

    @property
    def achieved_fps(self) -> float:
        """Results per second between the first and the last."""
        if self.results < 2 or self.last_us == self.first_us:
            return 0.0
        return (self.results - 1) / ((self.last_us - self.first_us) / 1e6)

    @property
    def offered(self) -> int:
        """Frames offered: the camera frames sent or replaced here; in voice mode (no frames sent) the frames the
        voice covers so far, as the server counts them."""
        return max(self.sent + self.client_dropped, self.server_received)

    @property
    def drop_rate(self) -> float:
        """Frames dropped (on the client and the server) per frame offered."""
        offered = self.offered
        return (self.client_dropped + self.server_dropped) / offered if offered else 0.0

    def summary(self) -> dict:
        ms = (lambda values: {f"p{k}": round(v * 1000, 1) for k, v in percentiles(values).items()})
        return {"sent": self.sent, "results": self.results, "no_face": self.no_face,
                "dropped_server": self.server_dropped, "dropped_client": self.client_dropped,
                "drop_rate": round(self.drop_rate, 4), "achieved_fps": round(self.achieved_fps, 2),
                "latency_ms": ms(self.latencies), "server_ms": ms(self.server_seconds),
                "render_ms": ms(self.render_seconds), **self._voice()}

    def _voice(self) -> dict:
        if not self.audio_seconds:
            return {}
        return {"audio_seconds": round(self.audio_seconds, 3),
                "first_frame_ms": None if self.first_frame_s is None else round(self.first_frame_s * 1000, 1),
                "audio_delay_ms": {f"p{k}": round(v * 1000, 1) for k, v in percentiles(self.audio_delays).items()}}
