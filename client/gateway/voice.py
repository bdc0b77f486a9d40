"""Voice mode (``POST /whip?portrait=ID&mode=voice``): the peer's microphone track drives the stream's voice mode, the
animated frames and the voice go back to the peer together.

The peer's audio (48 kHz Opus, decoded by aiortc) is resampled to 16 kHz mono (PyAV's ``AudioResampler``, kept
across frames) and handed to ``LiveStream.send_audio`` as each 20 ms frame arrives; the audio time of the stream is
the samples sent (frame k of the answer shows the voice at k/25 s). The same audio, kept at 48 kHz mono, is sent back
on the outgoing audio track, on ``playout.Playout``'s clock with the animated frames. When the peer's track ends
(RTCP BYE: the peer stopped sending), the stream's side is closed: the rest of the voice is animated and played out,
then the session ends. Gaps in the peer's audio (no packets in silence, DTX; lost packets) become silence, up to
``MAX_GAP_S`` a gap.
"""
from __future__ import annotations

import asyncio

import av
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from ..live import LiveStream
from ..live_stats import LiveResult
from .metrics import GatewayMetrics
from .playout import AUDIO_RATE as PEER_RATE
from .playout import FRAME_S, FrameTrack, Playout, VoiceBuffer, VoiceTrack

STREAM_RATE = 16_000  # what the orchestrator's audio models take; resampled here, 3x fewer bytes than 48 kHz
PLAY_OUT_S = 10.0  # at most this long to send the frames and voice left when the stream ended
MAX_GAP_S = 1.0  # the most silence put in for one gap in the peer's audio


class VoiceDriver:
    """Voice mode: the peer's audio track -> ``LiveStream.send_audio``; the answers -> ``FrameTrack``, the voice ->
    ``VoiceTrack``, both on one ``Playout`` clock."""

    kind = "audio"

    def __init__(self, stream: LiveStream, metrics: GatewayMetrics, margin_s: float = FRAME_S):
        self.stream, self.metrics = stream, metrics
        self.playout = Playout(margin_s)
        self.voice = VoiceBuffer()
        self.video = FrameTrack(self.playout, self._sent, lambda: metrics.dropped.labels("output").inc())
        self.audio = VoiceTrack(self.playout, self.voice)
        self.outgoing = [self.video, self.audio]
        self.announce = None  # set by the session: (message dict) -> None, the timing channel
        self._to_stream = av.AudioResampler(format="flt", layout="mono", rate=STREAM_RATE)
        self._to_peer = av.AudioResampler(format="s16", layout="mono", rate=PEER_RATE)
        self._pending: dict[int, dict] = {}  # sequence -> what the timing message says of it, until it is sent
        self._next_s: float | None = None  # where the next incoming frame should start (seconds, the peer's clock)

    async def run(self, track: MediaStreamTrack) -> None:
        """Until the peer's track ends; then the rest of the voice is animated (the stream's side closed)."""
        try:
            while True:
                frame = await track.recv()
                self.metrics.audio.labels("in").inc(frame.samples / frame.sample_rate)
                self._fill_gap(frame)
                self._forward_audio(frame)
        except MediaStreamError:
            self._forward_audio(None)
            await self.stream.close()

    def _fill_gap(self, frame: av.AudioFrame) -> None:
        """Packets the peer did not send (DTX in silence) or that were lost leave a gap in the frames' timestamps:
        filled with silence (at most ``MAX_GAP_S`` a gap), so the voice's time keeps the microphone's."""
        if frame.pts is None or frame.time_base is None:
            return
        if self._next_s is not None:
            gap_s = min(float(frame.pts * frame.time_base) - self._next_s, MAX_GAP_S)
            if gap_s >= 0.005:
                self._send(np.zeros(round(gap_s * PEER_RATE), np.int16), np.zeros(round(gap_s * STREAM_RATE),
                                                                                 np.float32))
        self._next_s = float(frame.pts * frame.time_base) + frame.samples / frame.sample_rate

    def _forward_audio(self, frame: av.AudioFrame | None) -> None:
        """``frame`` (None: the end) to the stream at 16 kHz and to the voice sent back at 48 kHz, both mono."""
        back = [out.to_ndarray().reshape(-1) for out in self._to_peer.resample(frame)]
        driving = [out.to_ndarray().reshape(-1) for out in self._to_stream.resample(frame)]
        self._send(np.concatenate(back or [np.zeros(0, np.int16)]),
                   np.concatenate(driving or [np.zeros(0, np.float32)]))

    def _send(self, back: np.ndarray, driving: np.ndarray) -> None:
        self.voice.add(back)
        if len(driving):
            self.stream.send_audio(driving, STREAM_RATE)
            self.metrics.audio.labels("driving").inc(len(driving) / STREAM_RATE)

    def forward(self, result: LiveResult, frame: av.VideoFrame | None) -> None:
        """An animated frame: queued for its due time (frames without a face show nothing new)."""
        if frame is None:
            return
        audio_s = result.sequence * FRAME_S
        self._pending[result.sequence] = {
            "sequence": result.sequence, "audio_s": round(audio_s, 3),
            "server_ms": round(result.server_seconds * 1000, 1),
            "gateway_ms": None if result.audio_delay_s is None else round(result.audio_delay_s * 1000, 1),
            "dropped": result.frames_dropped}
        if result.audio_delay_s is not None:
            self.metrics.latency.observe(result.audio_delay_s)
        self.video.put(audio_s, frame)

    def _sent(self, audio_s: float, pts: int) -> None:
        sequence = round(audio_s / FRAME_S)
        message = self._pending.pop(sequence, {"sequence": sequence, "audio_s": round(audio_s, 3)})
        for older in [s for s in self._pending if s < sequence]:
            del self._pending[older]  # dropped on the way out
        message.update(out_pts=pts, slipped_ms=round(self.playout.slipped_s * 1000, 1))
        self.metrics.frames.labels("out").inc()
        if self.announce is not None:
            self.announce(message)

    async def finish(self) -> None:
        """The stream ended: the frames waiting and the voice up to the last of them are sent first."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + PLAY_OUT_S
        while loop.time() < deadline and (not self.video.idle.is_set() or (
                self.playout.origin is not None and self.audio.played_s() + 1e-6 < self.playout.ready_until)):
            self.playout.changed.clear()
            try:
                await asyncio.wait_for(self.playout.changed.wait(), 0.1)
            except asyncio.TimeoutError:
                pass

    def stop(self) -> None:
        self.video.stop()
        self.audio.stop()

