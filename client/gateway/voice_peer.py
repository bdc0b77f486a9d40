"""A voice-mode WHIP peer in Python (aiortc): speaks a recording as its microphone, receives the animated portrait and
the voice sent back, and measures how they line up. Used by the tests and ``load_tests/webrtc.py --voice``.

    samples, onsets = syllables(2.0)  # speech-like audio at 48 kHz and when each syllable starts
    async with VoicePeer(url, portrait_id, samples, api_key=key, query="sampling_steps=2") as peer:
        await peer.spoken()  # the whole recording was sent, and the microphone closed (RTCP BYE)
        await peer.ended()  # the gateway animated the rest, played it out and closed the session
    print(peer.av_offsets(onsets), peer.voice_to_mouth(onsets), peer.first_frame_s())

The offer sends audio (sendrecv: the voice comes back) and receives video (recvonly), ``mode=voice``. Each animated
frame's audio time (``audio_s`` = sequence / 25) comes on the ``timing`` data channel with its ``out_pts``; a
syllable's onset at audio time t is shown when the frame covering t arrives (plus t's offset into it), and heard when
the onset arrives in the received audio (each 20 ms frame's samples from its arrival): their difference is the A/V
offset at this viewer (positive: the sound comes after the picture). Syllables whose frame the server skipped
(real-time pacing) are not measured.
"""
from __future__ import annotations

import asyncio
import fractions
import time

import av
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from .peer import GatewayPeer
from .rtp import install as complete_frames_on_marker

complete_frames_on_marker()
RATE = 48_000
TICK = 960  # 20 ms
FRAME_S = 0.04  # one animated frame's share of the voice (25 fps)
TIME_BASE = fractions.Fraction(1, RATE)


def syllables(seconds: float, rate: int = RATE, lead_s: float = 0.3, every_s: float = 0.5,
              length_s: float = 0.18) -> tuple[np.ndarray, list[float]]:
    """Speech-like audio: voiced syllables (a 110-260 Hz fundamental and its harmonics, a fast attack and a slow
    decay) every ``every_s`` seconds after ``lead_s`` of silence; float32 mono and the onset times (seconds)."""
    samples = np.zeros(int(seconds * rate), np.float32)
    onsets = list(np.arange(lead_s, seconds - length_s, every_s))
    t = np.arange(int(length_s * rate)) / rate
    envelope = np.minimum(t / 0.01, 1.0) * np.exp(-t / (length_s / 3))
    for index, onset in enumerate(onsets):
        f0 = 110 + 30 * (index % 6)
        voiced = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, 8))
        start = int(round(onset * rate))
        samples[start:start + len(t)] = 0.3 * envelope * voiced / 1.6
    return samples, [float(o) for o in onsets]


def onset_times(samples: np.ndarray, rate: int = RATE, threshold: float = 0.05, quiet_s: float = 0.1) -> list[float]:
    """Where the sound rises above ``threshold`` (of full scale) after ``quiet_s`` below it, in seconds."""
    loud = np.abs(samples) > threshold
    out, last_loud = [], -np.inf
    for index in np.flatnonzero(loud):
        if (index - last_loud) / rate >= quiet_s:
            out.append(index / rate)
        last_loud = index
    return out


class MicrophoneTrack(MediaStreamTrack):
    """``samples`` (48 kHz mono float32) played at real time in 20 ms frames, then the track ends; ``sent[i]`` is
    when frame i left (monotonic seconds)."""

    kind = "audio"

    def __init__(self, samples: np.ndarray):
        super().__init__()
        self.samples = (np.clip(samples, -1, 1) * 32767).astype(np.int16)
        self.sent: list[float] = []
        self.done = asyncio.Event()

    async def recv(self) -> av.AudioFrame:
        index = len(self.sent)
        if self.readyState != "live" or index * TICK >= len(self.samples):
            self.done.set()
            raise MediaStreamError
        if self.sent:
            await asyncio.sleep(max(0.0, self.sent[0] + index * TICK / RATE - time.monotonic()))
        chunk = np.zeros(TICK, np.int16)
        part = self.samples[index * TICK:(index + 1) * TICK]
        chunk[:len(part)] = part
        frame = av.AudioFrame.from_ndarray(chunk[None], format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = RATE, index * TICK, TIME_BASE
        self.sent.append(time.monotonic())
        return frame

    def sent_at(self, audio_s: float) -> float:
        """When the sample at ``audio_s`` left."""
        index = int(audio_s * RATE) // TICK
        return self.sent[index] + (audio_s * RATE - index * TICK) / RATE


class VoicePeer(GatewayPeer):
    """A voice-mode session with the gateway: ``samples`` spoken into the microphone track; the animated frames and
    the voice come back (``heard``)."""

    mode = "voice"

    def __init__(self, base_url: str, portrait_id: str, samples: np.ndarray, api_key: str | None = None,
                 query: str = ""):
        super().__init__(base_url, portrait_id, api_key, query)
        self.microphone = MicrophoneTrack(samples)
        self._closed = asyncio.Event()
        self.sender = self.pc.addTrack(self.microphone)  # sendrecv: the voice comes back on it
        self.pc.addTransceiver("video", direction="recvonly")
        self.pc.on("connectionstatechange", self._on_state)

    def _on_state(self) -> None:
        if self.pc.connectionState in ("closed", "failed"):
            self._closed.set()

    def _video_ended(self) -> None:
        self._closed.set()

    def _held(self) -> bool:
        return not self._closed.is_set()

    async def spoken(self) -> None:
        """Until the whole recording was sent; then the microphone is closed (RTCP BYE: the gateway's stream side
        closes, the rest of the voice is animated)."""
        await self.microphone.done.wait()
        await self.sender.stop()

    async def ended(self) -> None:
        """Until the gateway closed the session."""
        await self._closed.wait()

    def frames(self) -> list[dict]:
        """The timing messages of the frames shown here, in display order, each with ``shown`` (arrival time)."""
        out = []
        for pts, shown in sorted(self.displayed.items()):
            # the pts as received may differ from the pts announced by one tick (aiortc's RTP timestamp rounding)
            stamp = next((self.announced[p] for p in (pts, pts + 1, pts - 1) if p in self.announced), None)
            if stamp is not None:
                out.append(dict(stamp, shown=shown))
        return out

    def shown_at(self, audio_s: float) -> float | None:
        """When the picture of audio time ``audio_s`` was shown: the arrival of the frame covering that time plus
        the time into it; None when that frame was not shown (skipped by the server's real-time pacing)."""
        for frame in self.frames():
            if frame["audio_s"] - 1e-6 <= audio_s < frame["audio_s"] + FRAME_S - 1e-6:
                return frame["shown"] + (audio_s - frame["audio_s"])
        return None

    def heard_onsets(self) -> list[float]:
        """When each sound onset arrived here (a 20 ms frame's samples counted from its arrival)."""
        if not self.heard:
            return []
        samples = np.concatenate([s for _, s in self.heard])
        starts = np.cumsum([0] + [len(s) for _, s in self.heard])
        out = []
        for onset in onset_times(samples):
            index = int(round(onset * RATE))
            frame = int(np.searchsorted(starts, index, side="right")) - 1
            out.append(self.heard[frame][0] + (index - starts[frame]) / RATE)
        return out

    def av_offsets(self, onsets: list[float], window_s: float = 0.25) -> list[float]:
        """Per syllable onset (audio time, seconds) whose frame was shown: heard minus shown here, seconds
        (positive: the sound comes after the picture); an onset not heard within ``window_s`` of its picture is left
        out."""
        heard = self.heard_onsets()
        out = []
        for onset in onsets:
            shown = self.shown_at(onset)
            if shown is None or not heard:
                continue
            nearest = min(heard, key=lambda h: abs(h - shown))
            if abs(nearest - shown) <= window_s:
                out.append(nearest - shown)
        return out

    def voice_to_mouth(self, onsets: list[float]) -> list[float]:
        """Per onset: its picture shown here minus when its sound left the microphone (seconds)."""
        return [self.shown_at(o) - self.microphone.sent_at(o) for o in onsets if self.shown_at(o) is not None]

    def first_frame_s(self) -> float | None:
        """The microphone's first frame sent -> the first animated frame shown, seconds."""
        if not self.displayed or not self.microphone.sent:
            return None
        return min(self.displayed.values()) - self.microphone.sent[0]
