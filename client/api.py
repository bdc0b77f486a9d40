"""Python client of the LivePortrait service: ``PortraitClient`` (blocking) and ``AsyncPortraitClient`` (asyncio).

    with PortraitClient("localhost:50051") as client:
        summary = client.animate("portrait.jpg", "driving.mp4", "out.mp4", driving_multiplier=1.2)
        client.animate("portrait.jpg", "driving.mp4", "steady.mp4", smoothing={"min_cutoff_hz": 0.5})  # or True
        client.animate("portrait.jpg", "speech.wav", "talking.mp4",
                       audio_options=audio_options(emotion="happy", seed=7))  # or a dict of the same names

The driving input is chosen by its file suffix: a video, an image, a motion template (.pb, .json; official .pkl
templates are converted on the client with a restricted unpickler) or a voice (.wav, .mp3, .m4a, .aac, .ogg, .opus,
.flac: the output has the audio's length at 25 fps, with the audio muxed unless ``audio=False``). Videos and sound
files are streamed in 1 MiB chunks; the MP4 is written as it arrives.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Callable, Iterator

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from protos.liveportrait.v1 import portrait_animator_pb2 as pb
from protos.liveportrait.v1 import portrait_animator_pb2_grpc as pb_grpc

from .calls import stream_stream, stream_unary
from .channel import ChannelSettings, default_api_key, default_target
from .edits import EditResult, edit_request, keyframes_message, session_lost
from .messages import (InputError, _face_videos, _read, animate_requests, animation_options, audio_options,
                       encoder_speed, extract_requests, output_format)

if TYPE_CHECKING:
    from .live import LiveStream

ProgressCallback = Callable[[pb.Progress], None]


class _Output:
    """Writes the result (MP4 or still image) as it arrives to ``<path>.part`` and renames it on success. The part file is created at once:
    an output path that cannot be written fails before any request is sent (``InputError``), not after rendering."""

    def __init__(self, path: Path | None, sink: BinaryIO | None):
        self.path = Path(path) if path else None
        self.part = self.path.with_name(self.path.name + ".part") if self.path else None
        self.sink = sink
        self._file: BinaryIO | None = None
        if self.part is not None:
            try:
                self.part.parent.mkdir(parents=True, exist_ok=True)
                self._file = open(self.part, "wb")
            except OSError as exc:
                raise InputError(f"the output {str(self.path)!r} cannot be written: {exc.strerror or exc}") from None

    def write(self, data: bytes) -> None:
        if self.sink is not None:
            self.sink.write(data)
        if self._file is not None:
            self._file.write(data)
            self._file.flush()

    def finish(self) -> None:
        if self._file is not None:
            self._file.close()
            os.replace(self.part, self.path)

    def discard(self) -> None:
        if self._file is not None:
            self._file.close()
            self.part.unlink(missing_ok=True)


class PortraitClient:
    """Blocking client. Every call accepts ``timeout`` (seconds, a gRPC deadline)."""

    def __init__(self, target: str | None = None, root_certificates: Path | None = None, api_key: str | None = None,
                 client_cert: Path | None = None, client_key: Path | None = None):
        """``api_key`` defaults to $LIVEPORTRAIT_API_KEY; ``client_cert``/``client_key``: mutual TLS."""
        self.channel = ChannelSettings(target or default_target(), root_certificates, api_key or default_api_key(),
                                       client_cert, client_key).channel()
        self.stub = pb_grpc.PortraitAnimatorStub(self.channel)
        self.health_stub = health_pb2_grpc.HealthStub(self.channel)

    def __enter__(self) -> "PortraitClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.channel.close()

    def animate(self, source: Path | bytes, driving: Path | pb.MotionTemplate, output: Path | None = None,
                sink: BinaryIO | None = None, on_progress: ProgressCallback | None = None,
                timeout: float | None = None, crf: int | None = None, audio: bool | None = None,
                low_latency: bool | None = None, **options) -> pb.Summary:
        """Animate; the MP4 goes to ``output`` (a path) and/or ``sink`` (a binary file). Returns the summary. A still
        driving input (an image, a one-frame template) can give a still image instead: an ``output`` ending .png,
        .jpg or .jpeg asks for one (or ``output_format="png"``/``"jpeg"``, with ``jpeg_quality``).
        Several faces: ``faces="all"`` (or indices, boxes: ``faces_message``) and ``face_drivings={1: path}`` (an
        image, a template or a video: its motion is extracted first)."""
        out = _Output(output, sink)  # first: an output that cannot be written fails before any call
        summary = None
        try:
            for face, video in _face_videos(options.get("face_drivings")).items():
                options["face_drivings"] = {**options["face_drivings"],
                                            face: self.extract_motion(video, timeout=timeout)}
            requests = _animate_call(source, driving, crf, audio, low_latency, options, output)
            for response in self.stub.AnimatePortrait(requests, timeout=timeout):
                summary = _handle(response, out, on_progress) or summary
        except BaseException:
            out.discard()
            raise
        out.finish()
        return summary

    def stream(self, requests: Iterator[pb.AnimateRequest], timeout: float | None = None):
        """The raw response stream (a gRPC call object: iterate it, or ``cancel()`` it)."""
        return self.stub.AnimatePortrait(requests, timeout=timeout)

    def extract_motion(self, video: Path, crop_driving_video: str = "auto", timeout: float | None = None,
                       **voice) -> pb.MotionTemplate:
        """The motion of a driving video, or of a voice (a sound file with ``source=`` the portrait,
        ``audio_options=``, ``source_options=``: ``messages.extract_requests``) as a template."""
        return self.stub.ExtractMotion(extract_requests(video, crop_driving_video, **voice), timeout=timeout).template

    def detect(self, image: Path | bytes, ordering: str = "", hint: list[float] | None = None,
               timeout: float | None = None) -> pb.DetectFacesResponse:
        data = image if isinstance(image, bytes) else _read(image, "image")
        return self.stub.DetectFaces(pb.DetectFacesRequest(image=data, ordering=ordering, hint=hint or []),
                                     timeout=timeout)

    def edit(self, source: Path | bytes | None = None, edit: pb.Edit | dict | None = None,
             session_id: str | None = None, output: Path | None = None, format: str = "png",
             jpeg_quality: int | None = None, timeout: float | None = None, **source_options) -> EditResult:
        """EditPortrait: the edited image (written to ``output`` too when given). With ``session_id`` (from an
        earlier result) the image is not sent; if the server no longer has that session, the image is sent again.
        ``source_options``: ``EditSourceOptions`` fields (crop_source, face_index, stitching, paste_back, ...)."""
        data = source if isinstance(source, bytes) or source is None else _read(source, "source image")
        try:
            response = self.stub.EditPortrait(
                edit_request(None if session_id else data, edit, session_id, format, jpeg_quality, **source_options),
                timeout=timeout)
        except grpc.RpcError as exc:
            if not (session_id and data and session_lost(exc)):
                raise
            response = self.stub.EditPortrait(
                edit_request(data, edit, None, format, jpeg_quality, **source_options), timeout=timeout)
        result = EditResult.of(response)
        if output:
            result.save(output)
        return result

    def health(self, service: str = "", timeout: float | None = 5.0) -> str:
        """SERVING, NOT_SERVING, ... of the whole server ("") or of ``liveportrait.v1.PortraitAnimator``."""
        response = self.health_stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)


class AsyncPortraitClient:
    """asyncio client with the same methods as ``PortraitClient``."""

    def __init__(self, target: str | None = None, root_certificates: Path | None = None, api_key: str | None = None,
                 client_cert: Path | None = None, client_key: Path | None = None):
        self.channel = ChannelSettings(target or default_target(), root_certificates, api_key or default_api_key(),
                                       client_cert, client_key).aio_channel()
        self.stub = pb_grpc.PortraitAnimatorStub(self.channel)
        self.health_stub = health_pb2_grpc.HealthStub(self.channel)

    async def __aenter__(self) -> "AsyncPortraitClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        await self.channel.close()

    async def animate(self, source: Path | bytes, driving: Path | pb.MotionTemplate, output: Path | None = None,
                      sink: BinaryIO | None = None, on_progress: ProgressCallback | None = None,
                      timeout: float | None = None, crf: int | None = None, audio: bool | None = None,
                      low_latency: bool | None = None, **options) -> pb.Summary:
        out = _Output(output, sink)  # first: an output that cannot be written fails before any call
        summary = None
        try:
            for face, video in _face_videos(options.get("face_drivings")).items():
                options["face_drivings"] = {**options["face_drivings"],
                                            face: await self.extract_motion(video, timeout=timeout)}
            requests = _animate_call(source, driving, crf, audio, low_latency, options, output)
            async for response in stream_stream(self.stub.AnimatePortrait, requests, timeout):
                summary = _handle(response, out, on_progress) or summary
        except BaseException:
            out.discard()
            raise
        out.finish()
        return summary

    async def extract_motion(self, video: Path, crop_driving_video: str = "auto", timeout: float | None = None,
                             **voice) -> pb.MotionTemplate:
        response = await stream_unary(self.stub.ExtractMotion, extract_requests(video, crop_driving_video, **voice),
                                      timeout)
        return response.template

    async def detect(self, image: Path | bytes, ordering: str = "", hint: list[float] | None = None,
                     timeout: float | None = None) -> pb.DetectFacesResponse:
        data = image if isinstance(image, bytes) else _read(image, "image")
        return await self.stub.DetectFaces(pb.DetectFacesRequest(image=data, ordering=ordering, hint=hint or []),
                                           timeout=timeout)

    async def edit(self, source: Path | bytes | None = None, edit: pb.Edit | dict | None = None,
                   session_id: str | None = None, output: Path | None = None, format: str = "png",
                   jpeg_quality: int | None = None, timeout: float | None = None, **source_options) -> EditResult:
        data = source if isinstance(source, bytes) or source is None else _read(source, "source image")
        try:
            response = await self.stub.EditPortrait(
                edit_request(None if session_id else data, edit, session_id, format, jpeg_quality, **source_options),
                timeout=timeout)
        except grpc.RpcError as exc:
            if not (session_id and data and session_lost(exc)):
                raise
            response = await self.stub.EditPortrait(
                edit_request(data, edit, None, format, jpeg_quality, **source_options), timeout=timeout)
        result = EditResult.of(response)
        if output:
            result.save(output)
        return result

    async def health(self, service: str = "", timeout: float | None = 5.0) -> str:
        response = await self.health_stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)

    def live(self, source: Path | bytes, fps: float | None = None, output_format: str = "jpeg",
             input_format: str = "jpeg", jpeg_quality: int | None = None, timeout: float | None = None,
             voice: dict | pb.AudioOptions | None = None, drop_late_frames: bool = False,
             **options) -> "LiveStream":
        """AnimateStream (live animation; see client/live.py): ``async with client.live("me.jpg") as stream:``, then
        ``stream.send(frame)`` and ``async for result in stream``. ``fps``: the rate frames are sent at [25];
        ``output_format``/``input_format``: jpeg or i420; ``options``: animation options by name (as ``animate``);
        ``voice``: voice mode (``stream.send_audio``) with these audio options (``audio_options()`` or its keyword
        arguments as a dict; ``{}``: the defaults); ``drop_late_frames``: voice mode's real-time pacing (frames that
        fall more than one block behind the voice are skipped)."""
        from .live import LiveStream, live_setup

        if isinstance(voice, dict):
            voice = audio_options(**voice)
        setup = live_setup(source, fps, output_format, jpeg_quality, animation_options(**options), voice,
                           drop_late_frames)
        return LiveStream(self.stub, setup, input_format, timeout)


def _animate_call(source: Path | bytes, driving: Path | pb.MotionTemplate, crf: int | None, audio: bool | None,
                  low_latency: bool | None, options: dict, output: Path | None) -> Iterator[pb.AnimateRequest]:
    """The request stream of ``animate`` (both clients): animation options by name, output options (a source
    video's ``fps_and_audio_from_driving`` among them; ``output_format`` by name or the output's suffix)."""
    still = output_format(options.pop("output_format", None), output)
    jpeg_quality = options.pop("jpeg_quality", None)
    keyframes, fps = options.pop("keyframes", None), options.pop("keyframes_fps", None)
    from_driving = options.pop("fps_and_audio_from_driving", None)
    speed = encoder_speed(options.pop("encoder_speed", None))  # "smallest", "balanced", "fastest"
    face_drivings = options.pop("face_drivings", None)
    voice = options.pop("audio_options", None)
    if isinstance(voice, dict):
        voice = audio_options(**voice)
    if keyframes is not None:
        driving = keyframes_message(keyframes, fps)
    return animate_requests(source, driving, animation_options(**options),
                            pb.OutputOptions(crf=crf, audio=audio, low_latency=low_latency,
                                             fps_and_audio_from_driving=from_driving, encoder_speed=speed,
                                             format=still, jpeg_quality=jpeg_quality),
                            face_drivings=face_drivings, audio_options=voice)


def _handle(response: pb.AnimateResponse, out: _Output, on_progress: ProgressCallback | None) -> pb.Summary | None:
    kind = response.WhichOneof("event")
    if kind == "video":
        out.write(response.video.data)
    elif kind == "progress" and on_progress:
        on_progress(response.progress)
    elif kind == "summary":
        return response.summary
    return None
