"""``liveportrait live``: a camera (or a video file played as one, in real time at its own frame rate) animates a
portrait through ``AnimateStream`` (or a voice does: ``--audio`` / ``--microphone``, see ``live_voice.py``); the
result is written to an MP4 and/or shown, a status line is printed every second (``live_status.py``), and the
stream's figures are printed at the end: latency from capture to the animated frame's arrival (p50/p95/p99), the
server's share, one frame's render time, the achieved frame rate and the drop rate.
"""
from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from fractions import Fraction
from pathlib import Path
from typing import AsyncIterator

import numpy as np

from .cli_options import VIDEO_ONLY  # noqa: F401 (the options a live stream does not take; web_live.py)
from .live import LiveStream, now_us
from .live_stats import LiveResult
from .live_status import StatusLine, every_second
from .live_voice import Microphone, VoiceFile, report_voice, speak, voice_kwarg  # noqa: F401 (voice_kwarg: cli.py)
from .messages import VIDEO_SUFFIXES


class FileCamera:
    """A video file played as a camera: frame i is captured at start + i / fps (real time), ``loop`` replays it."""

    def __init__(self, path: Path, fps: float | None = None, loop: bool = False):
        import av

        self.path = Path(path)
        if not self.path.is_file():
            raise ValueError(f"the driving video {str(path)!r} does not exist")
        try:
            with av.open(str(self.path)) as container:
                if not container.streams.video:
                    raise ValueError(f"the driving video {str(path)!r} has no video stream")
                stream = container.streams.video[0]
                rate = stream.average_rate or stream.guessed_rate or 25
                next(container.decode(stream))  # one frame: the file is a video we can play
        except (av.error.FFmpegError, StopIteration, OSError):  # FFmpeg's own text is not repeated
            raise ValueError(f"the driving video {str(path)!r} is not a video in a supported format, or it is "
                             "truncated or corrupt") from None
        self.fps = float(fps or rate)
        self.loop = loop

    def _decoded(self):
        import av

        while True:
            index = 0
            try:
                with av.open(str(self.path)) as container:
                    for frame in container.decode(video=0):
                        yield frame.to_ndarray(format="rgb24")
                        index += 1
            except av.error.FFmpegError:
                raise ValueError(f"the driving video {str(self.path)!r} could not be decoded after frame {index} "
                                 "(corrupt or truncated)") from None
            if not self.loop:
                return

    async def frames(self) -> AsyncIterator[tuple[np.ndarray, int]]:
        frames = self._decoded()
        started = time.monotonic()
        index = 0
        try:
            while (frame := await asyncio.to_thread(next, frames, None)) is not None:
                delay = started + index / self.fps - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                yield frame, now_us()
                index += 1
        finally:
            frames.close()  # the open video file


class OpenCvCamera:
    """A camera read through OpenCV (``cv2.VideoCapture(index)``)."""

    def __init__(self, index: int):
        import cv2

        self.capture = cv2.VideoCapture(index)
        if not self.capture.isOpened():
            raise ValueError(f"camera {index} cannot be opened (no camera, or OpenCV has no access to it); play a "
                             "video file as a camera with --driving clip.mp4")
        self.fps = float(self.capture.get(cv2.CAP_PROP_FPS) or 30.0)

    async def frames(self) -> AsyncIterator[tuple[np.ndarray, int]]:
        import cv2

        try:
            while True:
                ok, frame = await asyncio.to_thread(self.capture.read)
                if not ok:
                    return
                yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), now_us()
        finally:
            self.capture.release()


class Mp4Writer:
    """The animated frames as an H.264 MP4; each frame at its driving frame's position (``sequence / fps``), so a
    dropped frame shows as the previous one held."""

    def __init__(self, path: Path, width: int, height: int, fps: float):
        import av

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.container = av.open(str(self.path), "w")
        rate = Fraction(fps).limit_denominator(1001)
        self.stream = self.container.add_stream("libx264", rate=rate)
        self.stream.width, self.stream.height, self.stream.pix_fmt = width, height, "yuv420p"
        self.stream.codec_context.time_base = 1 / rate
        self.first: int | None = None
        self.last_pts = -1
        self.frames = 0

    def write(self, result: LiveResult) -> None:
        import av

        image = result.rgb()
        if image is None:
            return
        self.first = result.sequence if self.first is None else self.first
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts = self.last_pts = max(result.sequence - self.first, self.last_pts + 1)
        self.container.mux(self.stream.encode(frame))
        self.frames += 1

    def close(self) -> None:
        self.container.mux(self.stream.encode(None))
        self.container.close()


class Window:
    """``--show``: an OpenCV window (needs an OpenCV build with GUI support)."""

    name = "liveportrait live (q: quit)"

    def __init__(self):
        import cv2

        try:
            cv2.namedWindow(self.name, cv2.WINDOW_AUTOSIZE)
        except cv2.error:
            raise ValueError("--show needs OpenCV with GUI support (pip install opencv-python instead of "
                             "opencv-python-headless, and a display); write the result with -o out.mp4") from None

    def show(self, result: LiveResult) -> bool:
        """False when the user asked to quit."""
        import cv2

        image = result.rgb()
        if image is not None:
            cv2.imshow(self.name, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        return cv2.waitKey(1) & 0xFF not in (ord("q"), 27)

    def close(self) -> None:
        import cv2

        cv2.destroyWindow(self.name)


async def play(stream: LiveStream, camera, writer: Mp4Writer | None, window: Window | None,
               max_frames: int | None, seconds: float | None) -> None:
    """Send the camera's frames while showing/writing the results; ends when the camera does, after ``max_frames``
    or ``seconds``, or when the window is closed."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    try:  # Ctrl-C ends the stream cleanly (the figures are still printed)
        loop.add_signal_handler(signal.SIGINT, stop.set)
    except (NotImplementedError, RuntimeError, ValueError):
        pass

    async def send() -> None:
        ends = None if seconds is None else time.monotonic() + seconds
        count = 0
        try:
            async for frame, captured in camera.frames():
                if stop.is_set() or (ends is not None and time.monotonic() >= ends):
                    break
                stream.send(frame, captured)
                count += 1
                if max_frames is not None and count >= max_frames:
                    break
        except BaseException:
            stream.cancel()  # a camera that fails ends the stream at once (its error is raised from `await sender`)
            raise
        await stream.close()

    sender = asyncio.create_task(speak(stream, camera, seconds, stop) if hasattr(camera, "chunks") else send())
    try:
        async for result in stream:
            if writer is not None:
                await asyncio.to_thread(writer.write, result)
            if window is not None and not window.show(result):
                stop.set()
                break
        await sender
    finally:
        sender.cancel()
        try:
            loop.remove_signal_handler(signal.SIGINT)
        except (NotImplementedError, RuntimeError, ValueError):
            pass


def report(stream: LiveStream, fps: float, as_json: bool = False) -> None:
    summary = stream.stats.summary()
    summary["fps_sent"] = round(fps, 3)
    if as_json:
        print(json.dumps(summary))
        return
    if "audio_seconds" in summary:
        report_voice(summary)
        return
    lat, server, render = summary["latency_ms"], summary["server_ms"], summary["render_ms"]
    print(f"frames: {summary['sent']} sent at {fps:.3g} fps, {summary['results']} answered "
          f"({summary['no_face']} without a face), dropped {summary['dropped_server']} on the server + "
          f"{summary['dropped_client']} on the client = drop rate {summary['drop_rate']:.1%}; achieved "
          f"{summary['achieved_fps']:.2f} fps")
    print(f"latency capture -> animated frame: p50 {lat['p50']} ms, p95 {lat['p95']} ms, p99 {lat['p99']} ms "
          f"(server p50 {server['p50']} / p95 {server['p95']} / p99 {server['p99']} ms; one frame's render p50 "
          f"{render['p50']} ms)")


async def run(client, args, options: dict) -> LiveStream:
    voice = options.get("voice") is not None
    if voice:
        camera = VoiceFile(args.voice) if args.voice else Microphone(args.microphone)
    else:
        camera = FileCamera(args.driving, args.fps, args.loop) if args.driving else OpenCvCamera(args.camera)
    fps = 25.0 if voice else args.fps or camera.fps
    window = Window() if args.show else None
    if voice:
        options["drop_late_frames"] = getattr(args, "drop_late_frames", False)
    stream = client.live(args.source, fps=None if voice else fps, output_format="jpeg",
                         input_format=args.input_format, timeout=args.timeout, **options)
    writer = None
    stop = asyncio.Event()
    status = ticking = None
    try:
        async with stream:
            started = stream.started
            print(f"live: {started.width}x{started.height} output, source prepared in "
                  f"{sum(t.seconds for t in started.timings):.2f} s; sending at {fps:.3g} fps", file=sys.stderr)
            for warning in started.warnings:
                print(f"WARNING: {warning}", file=sys.stderr)
            if args.output:
                writer = Mp4Writer(args.output, started.width, started.height, fps)
            status = StatusLine(stream.stats, fps, suggest_fps=not voice)
            ticking = asyncio.create_task(every_second(status, stop))
            await play(stream, camera, writer, window, args.frames, args.seconds)
    finally:
        stop.set()
        if ticking is not None:
            await ticking
            status.close()
        if writer is not None:
            await asyncio.to_thread(writer.close)
            print(f"wrote {args.output}: {writer.frames} frames", file=sys.stderr)
        if window is not None:
            window.close()
    report(stream, fps, args.json)
    return stream


def check_options(args) -> None:
    """What argparse cannot check: one driving input, a portrait image as the source, the voice-only flags."""
    if Path(args.source).suffix.lower() in VIDEO_SUFFIXES:
        raise ValueError(f"live animates a portrait image, and the source {str(args.source)!r} is a video; to animate "
                         f"a video with a driving video use `liveportrait animate --source {args.source} --driving "
                         "D -o out.mp4`")
    voice, microphone = getattr(args, "voice", None), getattr(args, "microphone", None)
    inputs = [args.driving, args.camera, voice, microphone]
    if sum(value is not None for value in inputs) != 1:
        raise ValueError("give one of --driving (a video played as a camera), --camera N, --audio speech.wav (a "
                         "voice) and --microphone")
    if getattr(args, "drop_late_frames", False) and not (voice or microphone):
        raise ValueError("--drop-late-frames: for a voice (--audio speech.wav or --microphone)")
    if (voice or microphone) and args.fps is not None:
        raise ValueError("--fps: a voice gives 25 frames per second of audio")
