"""Voice mode's playout: the animated frames and the peer's own voice sent back on one clock, so that the viewer
hears each sound when the mouth shapes it.

The clock maps the voice's time (seconds of audio since the stream's first sample: frame k shows the voice at k/25 s)
to the gateway's wall clock: ``origin`` is when audio time 0 plays. The first animated frame sets it (that frame is
sent as it arrives, plus ``margin_s``). The voice plays on the clock but never past the last frame that arrived; when
it had to wait (a server slower than real time), the next frame moves the clock on by the wait, so the voice resumes
from where it stopped and that frame is shown with its own sound: picture and sound stall together rather than drift
apart. A frame the server skipped (real-time pacing) leaves the frame before on screen while its sound plays.

``FrameTrack`` (video) sends each frame at its due time (pts: its due time on the gateway's clock, 90 kHz);
``VoiceTrack`` (audio) sends 20 ms of the voice every 20 ms of wall time, taken from ``VoiceBuffer`` (the peer's audio
as received, 48 kHz mono) at the clock's position, or silence. aiortc stamps each RTP packet's sender report with the
time it was sent, so a receiver that synchronises audio and video (a browser) sees them as sent: together.
"""
from __future__ import annotations

import asyncio
import fractions
import time
from collections import deque
from typing import Callable

import av
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

CLOCK_RATE = 90_000
VIDEO_TIME_BASE = fractions.Fraction(1, CLOCK_RATE)
AUDIO_RATE = 48_000
AUDIO_TIME_BASE = fractions.Fraction(1, AUDIO_RATE)
TICK = 960  # samples in one 20 ms audio frame at 48 kHz
FRAME_S = 0.04  # one animated frame's share of the voice (25 fps)
HALF_TICK_S = TICK / AUDIO_RATE / 2  # a 20 ms piece of the voice plays when its start is due, to within 10 ms
MAX_BEHIND_S = 0.2  # the voice skips ahead when its sending fell this far behind the clock


class Playout:
    """The shared clock: audio time -> wall time (``time.monotonic`` seconds)."""

    def __init__(self, margin_s: float = FRAME_S, clock=time.monotonic):
        self.margin_s = margin_s
        self.clock = clock
        self.origin: float | None = None  # wall time at which audio time 0 plays
        self.ready_until = 0.0  # audio time up to which frames arrived (the voice plays no further)
        self.slipped_s = 0.0  # how far the clock was moved on, in all
        self.changed = asyncio.Event()

    def arrived(self, audio_s: float) -> None:
        """A frame for audio time ``audio_s`` arrived: start the clock; or, when the voice has been waiting for it
        (the clock ran past the frames that had arrived), move the clock on so the voice resumes now from where it
        waited. Frames the server skipped leave their time to the frame before (held on screen, the voice going on)."""
        now = self.clock()
        if self.origin is None:
            self.origin = now + self.margin_s - audio_s
        elif now - self.origin > self.ready_until:
            slipped = now - self.ready_until - self.origin
            self.slipped_s += slipped
            self.origin += slipped
        self.ready_until = max(self.ready_until, audio_s + FRAME_S)
        self.changed.set()

    def due(self, audio_s: float) -> float:
        return self.origin + audio_s

    def now_s(self) -> float | None:
        """The audio time playing now (None before the first frame)."""
        return None if self.origin is None else self.clock() - self.origin


class FrameTrack(MediaStreamTrack):
    """The outgoing video in voice mode: the animated frames in order, each sent at its due time. At most
    ``capacity`` wait (the oldest is dropped beyond; ``on_drop`` counts it); ``on_send(audio_s, pts)`` is called as
    each frame leaves, before the encoder takes it."""

    kind = "video"

    def __init__(self, playout: Playout, on_send: Callable[[float, int], None], on_drop: Callable[[], None],
                 capacity: int = 50):
        super().__init__()
        self.playout = playout
        self.on_send, self.on_drop = on_send, on_drop
        self.frames: deque[tuple[float, av.VideoFrame]] = deque()
        self.capacity = capacity
        self._first: float | None = None
        self._last_pts = -1
        self._ready = asyncio.Event()
        self.idle = asyncio.Event()  # every frame given was sent

    def put(self, audio_s: float, frame: av.VideoFrame) -> None:
        self.playout.arrived(audio_s)
        self.frames.append((audio_s, frame))
        self.idle.clear()
        while len(self.frames) > self.capacity:
            self.frames.popleft()
            self.on_drop()
        self._ready.set()

    def stop(self) -> None:
        super().stop()
        self._ready.set()

    async def recv(self) -> av.VideoFrame:
        while not self.frames:
            if self.readyState != "live":
                raise MediaStreamError
            self.idle.set()  # the frame before was encoded and sent: the encoder asks for the next
            self._ready.clear()
            await self._ready.wait()
        self.idle.clear()
        audio_s = self.frames[0][0]
        while (wait := self.playout.due(audio_s) - self.playout.clock()) > 0:
            await asyncio.sleep(wait)  # the due time only ever moves later: check again after
        _, frame = self.frames.popleft()
        due = self.playout.due(audio_s)
        self._first = due if self._first is None else self._first
        pts = max(round((due - self._first) * CLOCK_RATE), self._last_pts + 1)
        self._last_pts = pts
        frame.pts, frame.time_base = pts, VIDEO_TIME_BASE
        self.on_send(audio_s, pts)
        return frame


class VoiceBuffer:
    """The peer's voice as received (48 kHz mono int16), from audio time 0; what was played is let go."""

    def __init__(self, max_seconds: float = 30.0):
        self.chunks: deque[np.ndarray] = deque()
        self.start = 0  # the sample index of chunks[0][0]
        self.end = 0  # samples received in all
        self.max_samples = int(max_seconds * AUDIO_RATE)

    def add(self, samples: np.ndarray) -> None:
        self.chunks.append(samples)
        self.end += len(samples)
        while self.end - self.start - len(self.chunks[0]) > self.max_samples:  # a stream far behind: bounded
            self.start += len(self.chunks.popleft())

    def take(self, first: int, count: int) -> np.ndarray:
        """Samples ``first`` .. ``first + count`` (zeros where there are none); the ones before ``first`` are let
        go."""
        while self.chunks and self.start + len(self.chunks[0]) <= first:
            self.start += len(self.chunks.popleft())
        out = np.zeros(count, np.int16)
        position = self.start
        for chunk in self.chunks:
            lo, hi = max(first, position), min(first + count, position + len(chunk))
            if lo < hi:
                out[lo - first:hi - first] = chunk[lo - position:hi - position]
            position += len(chunk)
            if position >= first + count:
                break
        return out


class VoiceTrack(MediaStreamTrack):
    """The outgoing audio in voice mode: 20 ms every 20 ms, the voice at the clock's position (or silence)."""

    kind = "audio"

    def __init__(self, playout: Playout, voice: VoiceBuffer):
        super().__init__()
        self.playout, self.voice = playout, voice
        self.position = 0  # the next voice sample to play (48 kHz)
        self.ticks = 0
        self.started: float | None = None
        self.voiced = 0  # ticks that carried the voice (not silence)

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        now = self.playout.clock()
        self.started = now if self.started is None else self.started
        wait = self.started + self.ticks * TICK / AUDIO_RATE - now
        if wait > 0:
            await asyncio.sleep(wait)
        playing = self.playout.now_s()
        if playing is not None:
            limit = min(playing, self.playout.ready_until)
            if self.position / AUDIO_RATE < limit - MAX_BEHIND_S:
                self.position = int(limit * AUDIO_RATE)  # the sending fell behind the clock: skip, keep in sync
        start, end = self.position / AUDIO_RATE, (self.position + TICK) / AUDIO_RATE
        if playing is not None and start <= playing + HALF_TICK_S and end <= self.playout.ready_until + 1e-9:
            samples = self.voice.take(self.position, TICK)
            self.position += TICK
            self.voiced += 1
        else:
            samples = np.zeros(TICK, np.int16)  # the picture has not caught up: the voice waits for it
        frame = av.AudioFrame.from_ndarray(samples[None], format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = AUDIO_RATE, self.ticks * TICK, AUDIO_TIME_BASE
        self.ticks += 1
        return frame

    def played_s(self) -> float:
        """The audio time played so far."""
        return self.position / AUDIO_RATE

