"""Video input and output with PyAV (FFmpeg): streaming decode, fragmented MP4 encode with audio, exact frame rates.

* ``probe`` / ``read_frames``: a driving video (a file spooled from the request stream) decoded frame by frame in
  chunks, so memory does not grow with the video's length.
* ``FragmentedMp4Writer``: H.264 (libx264, yuv420p, browser-playable) fragmented MP4 at a rational frame rate
  (30000/1001 stays 30000/1001), with the driving video's audio re-encoded to AAC and interleaved as the video
  advances. ``write`` returns the bytes produced so far, so the caller can stream them while encoding continues.
"""
from __future__ import annotations

import io
import logging
import threading
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import cv2
import numpy as np

DEFAULT_FPS = Fraction(25)  # official output_fps for a driving image
AAC_FRAME = 1024  # samples per AAC-LC frame
CODEC_NAMES = {"h264": "H.264", "hevc": "H.265/HEVC", "mpeg4": "MPEG-4 Part 2", "vp8": "VP8", "vp9": "VP9",
               "av1": "AV1", "mjpeg": "Motion JPEG", "gif": "GIF", "prores": "ProRes"}
# FFmpeg's text-art demuxers (BinText, XBin, ADF, iCEDraw, ANSI): they take arbitrary bytes of some sizes (random
# bytes named *.bin are "BinText"), and an upload is never one of them: refused as "not a video".
NOT_VIDEO_FORMATS = {"bin", "xbin", "adf", "idf", "tty"}
log = logging.getLogger("liveportrait.orchestrator.media")


class InvalidVideoError(ValueError):
    """The uploaded (driving or source) video cannot be used; the message says why (maps to INVALID_ARGUMENT)."""


@dataclass(frozen=True)
class VideoInfo:
    width: int  # coded frame size (a display rotation may swap the sides of the decoded frames)
    height: int
    fps: Fraction
    frames: int  # from the container header (0 when unknown); the decoded count is authoritative
    has_audio: bool


def _open(path: Path, what: str = "driving video") -> av.container.InputContainer:
    """The spooled upload opened for reading. Client-facing messages never carry the library's text or the spool
    file's path (both go to the server log only)."""
    try:
        container = av.open(str(path), "r")
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        log.info("the %s cannot be opened: %s", what, exc)
        raise InvalidVideoError(f"the {what} cannot be read: it is not a video file in a supported format, "
                                "or it is truncated or corrupt") from None
    if container.format.name in NOT_VIDEO_FORMATS:
        log.info("the %s was taken for FFmpeg's %r format: not a video", what, container.format.name)
        container.close()
        raise InvalidVideoError(f"the {what} cannot be read: it is not a video file in a supported format, "
                                "or it is truncated or corrupt")
    return container


def probe(path: Path, what: str = "driving video") -> VideoInfo:
    """Size, frame rate, header frame count and audio of an uploaded video (``what`` names it in errors)."""
    with _open(path, what) as container:
        if not container.streams.video:
            hint = (" (it is a sound file: to drive the portrait with a voice send it as driving_audio)"
                    if container.streams.audio and what == "driving video" else "")
            raise InvalidVideoError(f"the {what.split()[0]} file has no video stream{hint}")
        stream = container.streams.video[0]
        fps = stream.average_rate or stream.guessed_rate or stream.base_rate
        if not fps or fps <= 0:
            fps = DEFAULT_FPS
        codec = stream.codec_context
        if codec is None:  # found by fuzzing: a damaged sample description leaves the track without a decoder
            raise InvalidVideoError(f"the {what}'s track has no decoder (an unknown codec, or a damaged file)")
        width, height = codec.width, codec.height
        if not width or not height:
            raise InvalidVideoError(f"the {what} has no frame size")
        return VideoInfo(width, height, Fraction(fps).limit_denominator(1_000_000), stream.frames or 0,
                         bool(container.streams.audio))


def upright(frame: av.VideoFrame) -> np.ndarray:
    """The frame as it is meant to be seen: RGB uint8, turned by its display matrix (phones store portrait videos
    sideways with a +-90 degree rotation; ffmpeg's players and the official reader apply it)."""
    image = frame.to_ndarray(format="rgb24")
    quarter_turns = round((frame.rotation or 0) / 90) % 4  # counterclockwise
    return np.ascontiguousarray(np.rot90(image, quarter_turns)) if quarter_turns else image


def read_frames(path: Path, chunk: int, max_frames: int, what: str = "driving video") -> Iterator[list[np.ndarray]]:
    """RGB uint8 frames in lists of at most ``chunk``; more than ``max_frames`` frames raises InvalidVideoError."""
    with _open(path, what) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        batch: list[np.ndarray] = []
        count = 0
        try:
            for frame in container.decode(stream):
                count += 1
                if count > max_frames:
                    raise InvalidVideoError(f"the {what} has more than {max_frames} frames (the limit)")
                batch.append(upright(frame))
                if len(batch) == chunk:
                    yield batch
                    batch = []
        except av.error.FFmpegError as exc:
            codec = stream.codec_context.name or "video"
            log.info("the %s failed to decode after %d frames (%s): %s", what, count, codec, exc)
            raise InvalidVideoError(f"the {what} could not be decoded (corrupt or unsupported "
                                    f"{CODEC_NAMES.get(codec, codec)} stream at frame {count + 1})") from None
        if batch:
            yield batch
        if count == 0:
            raise InvalidVideoError(f"the {what} has no decodable frame")


class _Sink(io.RawIOBase):
    """A write-only, non-seekable file that collects what the muxer writes until it is taken."""

    def __init__(self):
        self._parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def write(self, data) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        data, self._parts = b"".join(self._parts), []
        return data


# The H.264 encoder's speeds (OutputOptions.encoder_speed): libx264 preset and crf, each crf the largest whose luma
# SSIM still reaches veryfast crf 18's at 512 and at 1280 (``load_tests.encoder_study --match-ssim``). CPU per frame
# and bytes against "smallest" (at 1280 / 512): balanced 0.69x / 0.73x of the CPU, 2.3x / 2.2x the bytes; fastest
# 0.38x / 0.41x of the CPU, 2.7x / 3.2x the bytes. The default is "fastest": the GPUs this service runs on (H100,
# H200) have no hardware encoder, so the encoder's CPU sets the cores each GPU needs.
ENCODER_SPEEDS = {"smallest": ("veryfast", 18), "balanced": ("superfast", 19), "fastest": ("ultrafast", 19)}
DEFAULT_ENCODER_SPEED = "fastest"
# low_latency: the encoder's delay cut to ~6 frames where the preset has more (veryfast: rate lookahead 10 and 3
# B-frames; superfast: 3 B-frames; ultrafast has neither), and no frame-threading delay
_SHORT_DELAY = {"veryfast": "bframes=2:rc-lookahead=4:", "superfast": "bframes=2:", "ultrafast": ""}


@dataclass(frozen=True)
class EncodeSettings:
    crf: int = ENCODER_SPEEDS[DEFAULT_ENCODER_SPEED][1]
    preset: str = ENCODER_SPEEDS[DEFAULT_ENCODER_SPEED][0]
    audio_bitrate: int = 128_000
    # False: a keyframe and an MP4 fragment every second. True: one fragment per frame, and a short encoder delay
    # (at most 2 B-frames, 4 frames of rate lookahead, no frame-threading delay: ~6 frames), so that the frames of a
    # chunk leave the encoder while the next chunk renders. (tune=zerolatency would remove the delay entirely but made
    # the d0.mp4 / d3.mp4 files 2.2x / 1.6x larger at the same crf; this setting gave 0.88x / 0.93x of veryfast's
    # bytes.)
    low_latency: bool = False

    @classmethod
    def of_speed(cls, speed: str, crf: int | None = None, low_latency: bool = False) -> "EncodeSettings":
        """The settings of an encoder speed (``ENCODER_SPEEDS``); ``crf``, when given, replaces the speed's."""
        preset, speed_crf = ENCODER_SPEEDS[speed]
        return cls(crf=speed_crf if crf is None else crf, preset=preset, low_latency=low_latency)

    @property
    def movflags(self) -> str:
        fragments = "frag_every_frame" if self.low_latency else "frag_keyframe"
        return f"{fragments}+empty_moov+default_base_moof"

    @property
    def codec_options(self) -> dict[str, str]:
        options = {"crf": str(self.crf), "preset": self.preset}
        if not self.low_latency:
            return options
        short_delay = _SHORT_DELAY.get(self.preset, "bframes=2:rc-lookahead=4:") + "sync-lookahead=0:sliced-threads=1"
        return {**options, "x264-params": short_delay}


class FragmentedMp4Writer:
    """Frames in, fragmented MP4 bytes out (a keyframe every second; fragments per ``EncodeSettings``)."""

    def __init__(self, width: int, height: int, fps: Fraction, settings: EncodeSettings = EncodeSettings(),
                 audio_from: Path | None = None):
        if width % 2 or height % 2:
            raise ValueError(f"yuv420p needs even sides, got {width}x{height}")
        self.fps = Fraction(fps)
        # write, close and abort one at a time: a cancelled request aborts (from the event loop) while its last write
        # may still run in a worker thread, and closing the container under it would crash libavformat
        self._busy = threading.Lock()
        self._sink = _Sink()
        # avoid_negative_ts disabled: the MP4 muxer places the AAC priming itself. The generic shift (the default)
        # moved the video by the priming when the video starts at 0 (no B-frames: ultrafast), stretching its first
        # frame (a 30 fps track read back as 29 fps). With B-frames the output is the same either way.
        self._out = av.open(self._sink, "w", format="mp4",
                            options={"movflags": settings.movflags, "avoid_negative_ts": "disabled"})
        self._video = self._out.add_stream("libx264", rate=self.fps)
        self._video.width, self._video.height, self._video.pix_fmt = width, height, "yuv420p"
        self._video.time_base = 1 / self.fps
        self._video.codec_context.gop_size = max(1, round(self.fps))
        self._video.options = settings.codec_options
        self._frames = 0
        self._audio = _AudioTrack.of(audio_from, self._out, settings.audio_bitrate) if audio_from else None
        try:  # the encoders opened and the header written now (while the first chunk renders), not at its encode
            self._out.start_encoding()
        except BaseException:
            self.abort()
            raise

    @property
    def has_audio(self) -> bool:
        return self._audio is not None

    def write(self, frames: list[np.ndarray]) -> bytes:
        """Encode frames: I420 ([h * 3 / 2, w] uint8, what the paste-back in YUV gives) or RGB ([h, w, 3] uint8);
        returns the MP4 bytes that became available (possibly none). Each frame is copied into the encoder's own
        frame (``from_ndarray``) before this returns: the caller may reuse its buffers afterwards."""
        with self._busy:
            return self._write(frames)

    def _write(self, frames: list[np.ndarray]) -> bytes:
        for image in frames:
            if image.ndim == 2:
                yuv = image
            else:  # BT.601 limited-range I420 by OpenCV (SIMD, 3x faster than the encoder's own swscale conversion)
                yuv = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2YUV_I420)
            frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
            frame.pts = self._frames
            self._frames += 1
            self._out.mux(self._video.encode(frame))
        if self._audio:
            self._audio.mux_until(self._frames / self.fps)
        return self._take()

    def close(self) -> bytes:
        """Flush the encoders and finish the file; returns the last bytes."""
        with self._busy:
            self._out.mux(self._video.encode(None))
            if self._audio:
                self._audio.mux_until(self._frames / self.fps)
                self._audio.flush()
            self._out.close()
            return self._take()

    def abort(self) -> None:
        """Close without finishing the file, once a write still running in another thread has returned."""
        with self._busy:
            try:
                self._out.close()
            except (av.error.FFmpegError, ValueError):
                pass
            if self._audio:
                self._audio.close()

    def _take(self) -> bytes:
        return self._sink.take()


class _AudioTrack:
    """The first audio stream of a file, decoded, resampled and re-encoded to AAC as far as the video has come
    (it ends within one audio frame after the last video frame)."""

    @classmethod
    def of(cls, path: Path, out: av.container.OutputContainer, bitrate: int) -> "_AudioTrack | None":
        """The track of ``path``'s first audio stream; None when it has none."""
        source = av.open(str(path), "r")
        if not source.streams.audio:
            source.close()
            return None
        return cls(source, out, bitrate)

    def __init__(self, container: av.container.InputContainer, out: av.container.OutputContainer, bitrate: int):
        self._input = container
        source = self._input.streams.audio[0]
        rate = source.codec_context.sample_rate or 44100
        self._stream = out.add_stream("aac", rate=rate)
        self._stream.bit_rate = bitrate
        self._stream.layout = "stereo" if (source.codec_context.layout.nb_channels or 2) > 1 else "mono"
        self._out = out
        # frames of the AAC encoder's size (1024 samples): the input's frames may be any size (MP3: 1152)
        self._resampler = av.AudioResampler(format="fltp", layout=self._stream.layout, rate=rate, frame_size=AAC_FRAME)
        self._frames = self._input.decode(source)
        self._rate = rate
        self._samples = 0  # samples sent to the encoder
        self._done = False

    def mux_until(self, seconds: Fraction) -> None:
        limit = int(seconds * self._rate)
        while not self._done and self._samples < limit:
            try:
                frame = next(self._frames)
            except (StopIteration, av.error.FFmpegError):
                self._done = True
                break
            frame.pts = None
            for chunk in self._resampler.resample(frame):
                chunk.pts = self._samples
                self._samples += chunk.samples
                self._out.mux(self._stream.encode(chunk))

    def flush(self) -> None:
        for chunk in self._resampler.resample(None):  # the last, shorter frame
            chunk.pts = self._samples
            self._samples += chunk.samples
            self._out.mux(self._stream.encode(chunk))
        self._out.mux(self._stream.encode(None))
        self.close()

    def close(self) -> None:
        self._input.close()


def encode_image(rgb: np.ndarray, image_format: str, quality: int) -> bytes:
    """An RGB image as PNG (fast compression) or JPEG (``quality`` 1..100): edits, live frames, still outputs."""
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    if image_format == "jpeg":
        ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    else:
        ok, data = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise RuntimeError(f"{image_format} encoding failed")
    return data.tobytes()
