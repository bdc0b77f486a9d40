"""The driving audio: an uploaded voice (WAV, MP3, M4A/AAC, OGG Vorbis/Opus, FLAC, or anything else FFmpeg decodes
that has an audio stream), decoded with PyAV and resampled to what the motion generator hears: 16 kHz mono float32.

* ``probe_audio``: opens the spooled upload, checks it has an audio stream and refuses one whose header already says
  it is longer than the limit (a 2-hour file is refused before a sample is decoded).
* ``decode_audio``: streams the frames through FFmpeg's resampler (any rate) and averages the channels (mono, stereo,
  5.1 ...: the mean of all channels, as Ditto's ``librosa.load`` does), counting the samples as they come and
  stopping at the limit, so memory stays bounded by the limit whatever the header claims.

Silence is valid audio (the head stays still-ish); samples beyond full scale (a clipped float file) are clipped to
[-1, 1] as a player would, and NaN samples become silence.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from .audio.features import FPS, SAMPLE_RATE, num_frames
from .media import NOT_VIDEO_FORMATS

DEFAULT_MAX_SECONDS = 600.0
WHAT = "the driving audio"
UNREADABLE = (f"{WHAT} cannot be read: it is not an audio file in a supported format (WAV, MP3, M4A/AAC, OGG/Opus, "
              "FLAC), or it is truncated or corrupt")
log = logging.getLogger("liveportrait.orchestrator.audio_input")


class InvalidAudioError(ValueError):
    """The driving audio cannot be used; the message says why (maps to INVALID_ARGUMENT)."""


@dataclass(frozen=True)
class AudioInfo:
    codec: str  # FFmpeg's decoder name, e.g. "mp3", "aac", "opus", "pcm_s16le"
    sample_rate: int  # the file's own rate (0 when the header does not say)
    channels: int  # the file's own channel count (0 when the header does not say)
    seconds: float | None  # the header's duration, None when unknown (the decoded length is authoritative)


@dataclass(frozen=True)
class DrivingAudio:
    """A decoded driving voice: what the motion generator hears, and the file the output's audio track comes from."""

    samples: np.ndarray  # (n,) 16 kHz mono float32 in [-1, 1]
    mux_path: Path | None  # the spooled upload (valid while the request runs); None: a silent output
    fps: Fraction = Fraction(FPS)  # the motion generator's rate (25 fps)

    @property
    def seconds(self) -> float:
        return len(self.samples) / SAMPLE_RATE

    @property
    def total_frames(self) -> int:
        """ceil(seconds * 25): the output's length."""
        return num_frames(len(self.samples))


def too_long(seconds: float, max_seconds: float) -> InvalidAudioError:
    return InvalidAudioError(f"{WHAT} is longer than the limit of {max_seconds:g} seconds ({seconds:.1f} s or more): "
                             "send a shorter clip (or split it)")


def _open(path: Path) -> av.container.InputContainer:
    """The upload opened for reading; FFmpeg's text and the spool path go to the log only."""
    try:
        container = av.open(str(path), "r")
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        log.info("the driving audio cannot be opened: %s", exc)
        raise InvalidAudioError(UNREADABLE) from None
    if container.format.name in NOT_VIDEO_FORMATS:  # FFmpeg's text-art demuxers take arbitrary bytes
        container.close()
        raise InvalidAudioError(UNREADABLE)
    if not container.streams.audio:
        video = bool(container.streams.video)
        container.close()
        raise InvalidAudioError(f"{WHAT} has no audio stream" + (
            " (it is a video without sound; to drive the portrait with a video send it as driving_video)"
            if video else ""))
    return container


def _header_seconds(container: av.container.InputContainer) -> float | None:
    stream = container.streams.audio[0]
    if stream.duration is not None and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def probe_audio(path: Path, max_seconds: float = DEFAULT_MAX_SECONDS) -> AudioInfo:
    """What the header says about the driving audio; a header duration over ``max_seconds`` is refused at once."""
    with _open(path) as container:
        codec = container.streams.audio[0].codec_context
        if codec is None:
            raise InvalidAudioError(f"{WHAT}'s stream has no decoder (an unknown codec, or a damaged file)")
        seconds = _header_seconds(container)
        if seconds is not None and seconds > max_seconds:
            raise too_long(seconds, max_seconds)
        channels = codec.layout.nb_channels if codec.layout else 0
        return AudioInfo(codec.name, codec.sample_rate or 0, channels, seconds)


def decode_audio(path: Path, max_seconds: float = DEFAULT_MAX_SECONDS) -> np.ndarray:
    """The first audio stream as 16 kHz mono float32 in [-1, 1]; more than ``max_seconds`` raises InvalidAudioError
    as soon as the decoded samples pass the limit (memory bounded by the limit, not by the file)."""
    limit = int(max_seconds * SAMPLE_RATE)
    parts: list[np.ndarray] = []
    count = 0
    with _open(path) as container:
        stream = container.streams.audio[0]
        resampler = None
        decoded = 0.0
        try:
            for frame in container.decode(stream):
                decoded += frame.samples / (frame.sample_rate or 1)
                frame.pts = None  # the resampler times its output itself (gaps and odd timestamps are not ours)
                if resampler is None:  # the channels are kept and averaged below (what librosa's load does)
                    resampler = av.AudioResampler(format="fltp", layout=frame.layout, rate=SAMPLE_RATE)
                for chunk in resampler.resample(frame):
                    count += _append(parts, chunk)
                if count > limit:
                    raise too_long(count / SAMPLE_RATE, max_seconds)
            for chunk in resampler.resample(None) if resampler else ():
                count += _append(parts, chunk)
        except av.error.FFmpegError as exc:
            log.info("the driving audio failed to decode after %.2f s (%s): %s", decoded, stream.codec_context.name,
                     exc)
            raise InvalidAudioError(f"{WHAT} could not be decoded (a corrupt or unsupported "
                                    f"{stream.codec_context.name} stream at {decoded:.2f} s)") from None
    if count > limit:
        raise too_long(count / SAMPLE_RATE, max_seconds)
    if count == 0:
        raise InvalidAudioError(f"{WHAT} has no decodable sound")
    samples = np.concatenate(parts)
    np.nan_to_num(samples, copy=False, nan=0.0, posinf=1.0, neginf=-1.0)
    return np.clip(samples, -1.0, 1.0, out=samples)


def _append(parts: list[np.ndarray], chunk: av.AudioFrame) -> int:
    samples = chunk.to_ndarray().mean(axis=0, dtype=np.float32)  # (channels, n) -> mono
    parts.append(samples)
    return len(samples)
