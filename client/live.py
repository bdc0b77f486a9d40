"""Live animation client (``AnimateStream``): send camera frames, receive animated frames, as an async iterator.

    async with AsyncPortraitClient("localhost:50051") as client:
        async with client.live("me.jpg", fps=25) as stream:  # the source is prepared when this returns
            print(stream.started.width, stream.started.height)
            stream.send(rgb_frame)  # numpy RGB (encoded to JPEG when it is sent), or JPEG/PNG bytes
            async for result in stream:  # LiveResult, in order, one per frame the server processed
                show(result.rgb())  # None when the frame showed no face
                print(result.latency_s, result.frames_dropped)
        print(stream.stats.summary())

Voice mode (``client.live("me.jpg", voice=audio_options(...))``, or ``voice={}`` for the defaults): send the voice
with ``stream.send_audio(samples, rate)`` (mono float32 or int16 numpy samples, any rate from 8 to 48 kHz; never
dropped, in order) and read one result per 1/25 s of audio: ``result.sequence`` k shows the voice at k/25 s. Each
result's ``audio_delay_s`` is its arrival here minus the moment the audio of its time was handed to ``send_audio``
(the audio-to-frame delay when the audio is sent as it is spoken); ``stats.first_frame_s`` is the first frame's
arrival after the first audio chunk was sent.

``send`` never blocks: frames wait in a slot of one on the client too (a newer frame replaces one the network has not
taken yet; counted as ``stats.client_dropped``), and the server keeps only the newest frame it has not started on
(older ones are dropped and counted in each result). Close the stream (leaving the ``async with``, or ``close()``) to
end it cleanly: frames still waiting are answered first; ``cancel()`` ends it at once. The results of a failed call
end with the ``grpc.aio.AioRpcError`` raised from the iteration.
"""
from __future__ import annotations

import asyncio
import bisect
import time
from collections import deque
from pathlib import Path

import cv2
import grpc
import numpy as np

from protos.liveportrait.v1 import portrait_animator_pb2 as pb

from .calls import EndStatus, send_all
from .live_stats import LiveResult, LiveStats
from .messages import _read

FORMATS = {"jpeg": pb.FRAME_ENCODED, "i420": pb.FRAME_I420}
_END = object()


def now_us() -> int:
    """The client clock of capture times: monotonic microseconds."""
    return time.monotonic_ns() // 1000


def live_setup(source: Path | bytes, fps: float | None = None, output_format: str = "jpeg",
               jpeg_quality: int | None = None, options: pb.AnimationOptions | None = None,
               voice: pb.AudioOptions | None = None, drop_late_frames: bool = False) -> pb.LiveSetup:
    """The setup message (the source image is read here: a missing file fails before any call); ``voice`` set:
    voice mode with these audio options (``drop_late_frames``: real-time pacing, late frames skipped)."""
    if output_format not in FORMATS:
        raise ValueError(f"unknown output format {output_format!r}; choose one of {', '.join(FORMATS)}")
    data = source if isinstance(source, bytes) else _read(source, "source image")
    setup = pb.LiveSetup(source_image=data, options=options or pb.AnimationOptions(),
                         output_format=FORMATS[output_format], jpeg_quality=jpeg_quality, fps=fps)
    if voice is not None:
        setup.voice.SetInParent()  # voice mode, even with every option at its default
        setup.voice.options.CopyFrom(voice)
        setup.voice.drop_late_frames = drop_late_frames
    return setup


AUDIO_ENCODINGS = {np.dtype(np.float32): pb.PCM_F32LE, np.dtype(np.int16): pb.PCM_S16LE}


def audio_messages(samples: np.ndarray, rate: int, max_seconds: float = 0.5) -> list[pb.LiveAudio]:
    """Mono float32 (-1..1) or int16 samples -> ``LiveAudio`` chunks of at most ``max_seconds``."""
    samples = np.asarray(samples)
    if samples.dtype not in AUDIO_ENCODINGS:
        samples = samples.astype(np.float32)
    if samples.ndim != 1:
        raise ValueError(f"send_audio takes mono samples (one dimension), got shape {samples.shape}")
    step = max(1, int(rate * max_seconds))
    little = samples.astype(samples.dtype.newbyteorder("<"), copy=False)
    return [pb.LiveAudio(pcm=little[i:i + step].tobytes(), encoding=AUDIO_ENCODINGS[samples.dtype],
                         sample_rate=int(rate)) for i in range(0, len(samples), step)]


def frame_message(frame: np.ndarray | bytes, capture_time_us: int, sequence: int, input_format: str = "jpeg",
                  jpeg_quality: int = 90) -> pb.DrivingFrame:
    """A driving frame: RGB uint8 (H x W x 3), or I420 planes (a 2-D uint8 array of H x 3/2 rows of W, as a video
    decoder gives them; even sides), sent as ``input_format`` (jpeg or i420: even sides); or an image file's bytes
    as they are. I420 planes sent as i420 go as they are, with no conversion."""
    if isinstance(frame, (bytes, bytearray)):
        return pb.DrivingFrame(data=bytes(frame), format=pb.FRAME_ENCODED, capture_time_us=capture_time_us,
                               sequence=sequence)
    if frame.ndim == 2:
        h, w = frame.shape[0] * 2 // 3, frame.shape[1]
        if frame.shape[0] != h * 3 // 2 or h % 2 or w % 2:
            raise ValueError(f"I420 planes of {frame.shape[0]} rows of {frame.shape[1]}: not a frame of even sides")
        if input_format == "i420":
            return pb.DrivingFrame(data=np.ascontiguousarray(frame).tobytes(), format=pb.FRAME_I420, width=w,
                                   height=h, capture_time_us=capture_time_us, sequence=sequence)
        bgr = cv2.cvtColor(frame, cv2.COLOR_YUV2BGR_I420)
        return _jpeg_frame(bgr, jpeg_quality, capture_time_us, sequence)
    h, w = frame.shape[:2]
    if input_format == "i420":
        if h % 2 or w % 2:
            frame = frame[:h - h % 2, :w - w % 2]
            h, w = frame.shape[:2]
        data = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2YUV_I420).tobytes()
        return pb.DrivingFrame(data=data, format=pb.FRAME_I420, width=w, height=h, capture_time_us=capture_time_us,
                               sequence=sequence)
    return _jpeg_frame(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), jpeg_quality, capture_time_us, sequence)


def _jpeg_frame(bgr: np.ndarray, quality: int, capture_time_us: int, sequence: int) -> pb.DrivingFrame:
    ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("the frame could not be JPEG-encoded")
    return pb.DrivingFrame(data=data.tobytes(), format=pb.FRAME_ENCODED, capture_time_us=capture_time_us,
                           sequence=sequence)


class _Outgoing:
    """Frames waiting for the network: reference frames in order, then the newest driving frame (one)."""

    def __init__(self):
        self.audio: deque = deque()  # voice chunks, in order, never replaced
        self.references: deque = deque()
        self.frame = None
        self.closed = False
        self.ready = asyncio.Event()

    def put(self, item, reference: bool, audio: bool = False) -> bool:
        """True when a waiting driving frame was replaced."""
        replaced = False
        if audio:
            self.audio.append(item)
        elif reference:
            self.references.append(item)
        else:
            replaced = self.frame is not None
            self.frame = item
        self.ready.set()
        return replaced

    async def take(self):
        while True:
            if self.audio:
                return self.audio.popleft(), None
            if self.references:
                return self.references.popleft(), True
            if self.frame is not None:
                item, self.frame = self.frame, None
                return item, False
            if self.closed:
                return None, False
            self.ready.clear()
            await self.ready.wait()


class LiveStream:
    """One ``AnimateStream`` call. ``start()`` (or ``async with``) sends the setup and waits for ``started``."""

    def __init__(self, stub, setup: pb.LiveSetup, input_format: str = "jpeg", timeout: float | None = None,
                 jpeg_quality: int = 90):
        if input_format not in FORMATS:
            raise ValueError(f"unknown input format {input_format!r}; choose one of {', '.join(FORMATS)}")
        self.stub = stub
        self.setup = setup
        self.input_format = input_format
        self.jpeg_quality = jpeg_quality
        self.timeout = timeout
        self.started: pb.LiveStarted | None = None
        self.stats = LiveStats()
        self.references: list[pb.ReferenceSet] = []  # the answers to reference frames, in order
        self._call = None
        self._status: EndStatus | None = None
        self._outgoing = _Outgoing()
        self._results: asyncio.Queue = asyncio.Queue()
        self._pending_references: deque[asyncio.Future] = deque()
        self._error: BaseException | None = None
        self._tasks: list[asyncio.Task] = []
        self._sequence = 0
        self._audio_ends: list[float] = []  # voice mode: seconds of audio sent after each chunk, and when
        self._audio_sent_us: list[int] = []

    async def __aenter__(self) -> "LiveStream":
        await self.start()
        return self

    async def __aexit__(self, exc_type, *_) -> None:
        if exc_type is None:
            await self.close()
        else:
            self.cancel()

    async def start(self) -> pb.LiveStarted:
        self._call = self.stub.AnimateStream(timeout=self.timeout)
        self._status = EndStatus(self._call)
        await send_all(self._call, [pb.LiveRequest(setup=self.setup)], half_close=False)
        try:
            response = await self._call.read()  # a refused setup raises its AioRpcError here
        except grpc.aio.AioRpcError as exc:
            raise await self._status.error(exc) from None
        if response is grpc.aio.EOF or response.WhichOneof("event") != "started":
            self.cancel()
            raise RuntimeError("the server did not start the live stream")
        self.started = response.started
        self._tasks = [asyncio.create_task(self._write()), asyncio.create_task(self._read())]
        return self.started

    def send(self, frame: np.ndarray | bytes, capture_time_us: int | None = None, sequence: int | None = None) -> int:
        """Queue a driving frame (RGB array, I420 planes or image bytes: ``frame_message``) without waiting; returns
        its sequence number. The capture time defaults to now on this client's clock (``now_us``), which
        ``LiveResult.latency_s`` compares with."""
        sequence = self._sequence if sequence is None else sequence
        self._sequence = sequence + 1
        item = (frame, now_us() if capture_time_us is None else capture_time_us, sequence)
        if self._outgoing.put(item, reference=False):
            self.stats.client_dropped += 1
        return sequence

    def send_audio(self, samples: np.ndarray, rate: int) -> float:
        """Voice mode: queue the next samples of the voice (mono float32 -1..1 or int16) at ``rate`` Hz, without
        waiting; never dropped. Returns the seconds of audio sent so far; the audio-to-frame delays count from now."""
        if not self.setup.HasField("voice"):
            raise ValueError("send_audio needs a stream in voice mode (client.live(..., voice=...))")
        messages = audio_messages(samples, rate)
        sent_us = now_us()
        if not self._audio_sent_us:
            self._first_audio_us = sent_us
        for message in messages:
            seconds = self.stats.audio_seconds + len(message.pcm) / np.dtype(
                np.float32 if message.encoding == pb.PCM_F32LE else np.int16).itemsize / rate
            self.stats.audio_seconds = seconds
            self._audio_ends.append(seconds)
            self._audio_sent_us.append(sent_us)
            self._outgoing.put(message, reference=False, audio=True)
        return self.stats.audio_seconds

    def _audio_delay(self, result: LiveResult) -> float | None:
        """When the chunk holding the audio at the frame's time was sent -> the frame's arrival."""
        if not self._audio_ends:
            return None
        index = min(bisect.bisect_left(self._audio_ends, result.sequence / 25.0), len(self._audio_ends) - 1)
        return (result.received_us - self._audio_sent_us[index]) / 1e6

    def send_reference(self, frame: np.ndarray | bytes) -> asyncio.Future:
        """A neutral frame the motion is relative to from now on; the future gives the server's ``ReferenceSet``
        (``face_found`` false: no face in it, the reference is unchanged)."""
        future = asyncio.get_running_loop().create_future()
        self._pending_references.append(future)
        self._outgoing.put((frame, now_us(), self._sequence), reference=True)
        return future

    def __aiter__(self) -> "LiveStream":
        return self

    async def __anext__(self) -> LiveResult:
        item = await self._results.get()
        if item is _END:
            self._results.put_nowait(_END)  # later iterations end too
            if self._error is not None:
                raise self._error
            raise StopAsyncIteration
        return item

    async def close(self) -> None:
        """No more frames: the waiting ones are sent and answered, then the call ends (the results stay readable)."""
        self._outgoing.closed = True
        self._outgoing.ready.set()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def cancel(self) -> None:
        """End the call at once (the server frees the stream)."""
        if self._call is not None:
            self._call.cancel()
        for task in self._tasks:
            task.cancel()

    async def _write(self) -> None:
        try:
            while True:
                item, reference = await self._outgoing.take()
                if item is None:
                    break
                if reference is None:  # a voice chunk
                    await self._call.write(pb.LiveRequest(audio=item))
                    continue
                frame, capture_us, sequence = item
                message = await asyncio.to_thread(frame_message, frame, capture_us, sequence, self.input_format,
                                                  self.jpeg_quality)
                await self._call.write(pb.LiveRequest(**{"reference" if reference else "frame": message}))
                self.stats.sent += not reference
            await self._call.done_writing()
        except (grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError):
            pass  # the call ended; the reader reports how
        except Exception as exc:  # a frame that cannot be sent (not an image, a failed encode): the stream ends with it
            self._error = exc
            self._call.cancel()

    async def _read(self) -> None:
        try:
            while (response := await self._call.read()) is not grpc.aio.EOF:
                kind = response.WhichOneof("event")
                if kind == "frame":
                    result = LiveResult.of(response.frame, now_us())
                    if self.setup.HasField("voice"):
                        result.audio_delay_s = self._audio_delay(result)
                        if self.stats.first_frame_s is None and self._audio_sent_us:
                            self.stats.first_frame_s = (result.received_us - self._first_audio_us) / 1e6
                    self.stats.add(result)
                    self._results.put_nowait(result)
                elif kind == "reference_set":
                    self.references.append(response.reference_set)
                    if self._pending_references:
                        future = self._pending_references.popleft()
                        if not future.done():
                            future.set_result(response.reference_set)
        except grpc.aio.AioRpcError as exc:
            self._error = self._error or await self._status.error(exc)  # the writer's own error first (it cancelled)
        except asyncio.CancelledError:
            pass
        finally:
            for future in self._pending_references:
                if not future.done():
                    future.cancel()
            self._results.put_nowait(_END)
