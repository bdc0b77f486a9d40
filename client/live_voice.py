"""``liveportrait live --audio speech.wav | --microphone``: a voice drives the portrait through AnimateStream's voice
mode. The file is streamed at real time (as a microphone would deliver it) in 40 ms chunks; the animated frames are
shown and/or written like the camera mode's, and the figures printed at the end: the first animated frame's delay
after the voice started, and each frame's audio-to-frame delay (its arrival minus the moment its audio was sent)
p50/p95/p99.
"""
from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import AsyncIterator

import numpy as np

from .live import LiveStream

CHUNK_S = 0.04  # one frame's audio per chunk


def voice_kwarg(args, flags: dict[str, str]) -> dict | None:
    """``client.live(voice=...)``: the audio options by name from the voice flags (``flags``: flag -> option), or
    None without a voice (the flags without one are refused rather than ignored)."""
    values = {name: getattr(args, flag) for flag, name in flags.items() if getattr(args, flag, None) is not None}
    if args.voice is None and args.microphone is None:
        if values:
            given = ", ".join("--" + flag.replace("_", "-") for flag, name in flags.items() if name in values)
            raise ValueError(f"{given} apply to a voice: give --audio speech.wav or --microphone")
        return None
    return values


class VoiceFile:
    """A sound file (anything FFmpeg decodes) as mono float32 at its own rate, played at real time in chunks."""

    def __init__(self, path: Path):
        import av

        self.path = Path(path)
        if not self.path.is_file():
            raise ValueError(f"the voice file {str(path)!r} does not exist")
        parts = []
        try:
            with av.open(str(self.path)) as container:
                if not container.streams.audio:
                    raise ValueError(f"the voice file {str(path)!r} has no audio stream")
                stream = container.streams.audio[0]
                self.rate = min(max(stream.codec_context.sample_rate or 16000, 8000), 48000)
                resampler = av.AudioResampler(format="flt", layout="mono", rate=self.rate)
                for frame in container.decode(stream):
                    parts += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
                parts += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
        except (av.error.FFmpegError, OSError):
            raise ValueError(f"the voice file {str(path)!r} is not a sound file in a supported format, or it is "
                             "truncated or corrupt") from None
        self.samples = np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)
        if not len(self.samples):
            raise ValueError(f"the voice file {str(path)!r} has no samples")

    async def chunks(self) -> AsyncIterator[np.ndarray]:
        step = int(round(self.rate * CHUNK_S))
        started = time.monotonic()
        for index, start in enumerate(range(0, len(self.samples), step)):
            delay = started + index * CHUNK_S - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            yield self.samples[start:start + step]


class Microphone:
    """A capture device read through PyAV (PulseAudio, else ALSA): mono float32 chunks as they are captured."""

    rate = 16000

    def __init__(self, device: str = "default"):
        import av

        errors = []
        for fmt in ("pulse", "alsa"):
            try:
                self.container = av.open(device, format=fmt, options={"sample_rate": str(self.rate), "channels": "1"})
                break
            except (av.error.FFmpegError, OSError, ValueError) as exc:
                errors.append(f"{fmt}: {str(exc)[:120]}")
        else:
            raise ValueError(f"no microphone {device!r} can be opened through PulseAudio or ALSA ({'; '.join(errors)});"
                             " stream a sound file with --audio speech.wav")
        self.resampler = av.AudioResampler(format="flt", layout="mono", rate=self.rate)

    def _read(self):
        for frame in self.container.decode(audio=0):
            for out in self.resampler.resample(frame):
                yield out.to_ndarray().reshape(-1).astype(np.float32)

    async def chunks(self) -> AsyncIterator[np.ndarray]:
        frames = self._read()
        try:
            while (chunk := await asyncio.to_thread(next, frames, None)) is not None:
                yield chunk
        finally:
            self.container.close()


async def speak(stream: LiveStream, voice, seconds: float | None, stop: asyncio.Event) -> None:
    """Send the voice's chunks as they come; close the stream at its end, after ``seconds`` or on ``stop``."""
    ends = None if seconds is None else time.monotonic() + seconds
    try:
        async for chunk in voice.chunks():
            if stop.is_set() or (ends is not None and time.monotonic() >= ends):
                break
            stream.send_audio(chunk, voice.rate)
    except BaseException:
        stream.cancel()
        raise
    await stream.close()


def report_voice(summary: dict) -> None:
    delay = summary["audio_delay_ms"]
    print(f"voice: {summary['audio_seconds']} s of audio, {summary['results']} frames (25 per second of audio); "
          f"{summary['dropped_server']} skipped as late; achieved {summary['achieved_fps']:.2f} fps")
    print(f"latency: first animated frame {summary['first_frame_ms']} ms after the voice started; audio -> frame "
          f"p50 {delay['p50']} ms, p95 {delay['p95']} ms, p99 {delay['p99']} ms (server per frame p50 "
          f"{summary['server_ms']['p50']} ms; one frame's render p50 {summary['render_ms']['p50']} ms)")
