"""Python client of the LivePortrait service: ``PortraitClient`` (blocking) and ``AsyncPortraitClient`` (asyncio).

    with PortraitClient("localhost:50051") as client:
        summary = client.animate("portrait.jpg", "driving.mp4", "out.mp4", driving_multiplier=1.2)
        client.animate("portrait.jpg", "driving.mp4", "steady.mp4", smoothing={"min_cutoff_hz": 0.5})  # or True

The driving input is chosen by its file suffix: a video, an image, or a motion template (.pb, .json; official .pkl
templates are converted on the client with a restricted unpickler). Videos are streamed in 1 MiB chunks; the MP4
is written as it arrives.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import AsyncIterator, BinaryIO, Callable, Iterator

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from protos.liveportrait.v1 import portrait_animator_pb2 as pb
from protos.liveportrait.v1 import portrait_animator_pb2_grpc as pb_grpc

from .channel import ChannelSettings, default_api_key, default_target
from .edits import EditResult, edit_message, edit_request, keyframes_message, session_lost
from .templates import TEMPLATE_SUFFIXES, TemplateError, read_template

CHUNK_BYTES = 1024 * 1024
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".avi", ".mkv", ".webm", ".gif")
REGIONS = {"all": pb.ALL, "exp": pb.EXP, "pose": pb.POSE, "lip": pb.LIP, "eyes": pb.EYES}
DRIVING_OPTIONS = {"expression-friendly": pb.EXPRESSION_FRIENDLY, "pose-friendly": pb.POSE_FRIENDLY}
DRIVING_CROP = {"auto": pb.DRIVING_CROP_AUTO, "on": pb.DRIVING_CROP_ON, "off": pb.DRIVING_CROP_OFF}
MODEL_SETS = {"human": pb.HUMAN, "animal": pb.ANIMAL}
ProgressCallback = Callable[[pb.Progress], None]


def animation_options(**options) -> pb.AnimationOptions:
    """``AnimationOptions`` from keyword arguments named like its fields; enums by name (``animation_region="lip"``,
    ``driving_option="pose-friendly"``, ``crop_driving_video="on"``, ``model_set="animal"``). Unset fields keep the
    official defaults."""
    values = dict(options)
    for name, table in (("animation_region", REGIONS), ("driving_option", DRIVING_OPTIONS),
                        ("crop_driving_video", DRIVING_CROP), ("model_set", MODEL_SETS)):
        if isinstance(values.get(name), str):
            if values[name] not in table:
                raise ValueError(f"unknown {name} {values[name]!r}; choose one of {', '.join(table)}")
            values[name] = table[values[name]]
    if values.get("edit") is not None:
        values["edit"] = edit_message(values["edit"])
    if values.get("smoothing") is not None:
        values["smoothing"] = smoothing_message(values["smoothing"])
    return pb.AnimationOptions(**{k: v for k, v in values.items() if v is not None})


def smoothing_message(value) -> pb.Smoothing:
    """``options.smoothing`` from ``True``/``False``, a dict (``{"min_cutoff_hz": 0.5, "beta": 0.3}``: enabled unless
    it says ``"enabled": False``) or a ``Smoothing`` message."""
    if isinstance(value, pb.Smoothing):
        return value
    if isinstance(value, bool):
        return pb.Smoothing(enabled=value)
    if isinstance(value, dict):
        unknown = set(value) - {"enabled", "min_cutoff_hz", "beta"}
        if unknown:
            raise ValueError(f"unknown smoothing setting(s) {', '.join(sorted(unknown))}; use enabled, "
                             "min_cutoff_hz, beta")
        return pb.Smoothing(**{"enabled": True, **{k: v for k, v in value.items() if v is not None}})
    raise ValueError(f"smoothing must be True/False, a dict or a Smoothing message, got {value!r}")


def driving_kind(path: Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix in TEMPLATE_SUFFIXES:
        return "template"
    if suffix in IMAGE_SUFFIXES:
        return "image"
    if suffix in VIDEO_SUFFIXES:
        return "video"
    raise ValueError(f"cannot tell what the driving file {path} is from its suffix {suffix!r}: use a video "
                     f"({', '.join(VIDEO_SUFFIXES)}), an image ({', '.join(IMAGE_SUFFIXES)}) or a motion template "
                     f"({', '.join(TEMPLATE_SUFFIXES)})")


class InputError(ValueError):
    """A local input (source, driving file) is missing, unreadable or malformed; raised before any call is made."""


def _checked_file(path: Path, what: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise InputError(f"the {what} {str(path)!r} does not exist")
    if not path.is_file():
        raise InputError(f"the {what} {str(path)!r} is not a file")
    if not os.access(path, os.R_OK):
        raise InputError(f"the {what} {str(path)!r} cannot be read (permission denied)")
    return path


def _read(path: Path, what: str) -> bytes:
    path = _checked_file(path, what)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"the {what} {str(path)!r} cannot be read: {exc.strerror or exc}") from None


def _chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            yield chunk


def animate_setup(source: Path | bytes, driving: Path | pb.MotionTemplate, options: pb.AnimationOptions | None = None,
                  output: pb.OutputOptions | None = None) -> tuple[pb.AnimateSetup, Path | None]:
    """The setup message and the driving video to stream after it (None: nothing follows). Every local input is
    read, converted and checked here, before a call starts: a missing file or a refused template raises
    ``InputError`` / ``TemplateError`` with its reason instead of failing inside gRPC's request iterator."""
    source_bytes = source if isinstance(source, bytes) else _read(source, "source image")
    setup = pb.AnimateSetup(source_image=source_bytes, options=options or pb.AnimationOptions(),
                            output=output or pb.OutputOptions())
    video = None
    if isinstance(driving, pb.MotionTemplate):
        setup.driving_template.CopyFrom(driving)
    elif isinstance(driving, pb.Keyframes):
        setup.driving_keyframes.CopyFrom(driving)
    else:
        kind = driving_kind(driving)
        if kind == "template":
            path = _checked_file(driving, "driving template")
            try:
                setup.driving_template.CopyFrom(read_template(path))
            except TemplateError as exc:
                raise TemplateError(f"the driving template {str(path)!r} is refused: {exc}") from None
        elif kind == "image":
            setup.driving_image = _read(driving, "driving image")
        else:
            video = _checked_file(driving, "driving video")
            setup.driving_video.CopyFrom(pb.DrivingVideo(size_bytes=video.stat().st_size, filename=video.name))
    return setup, video


def animate_requests(source: Path | bytes, driving: Path | pb.MotionTemplate, options: pb.AnimationOptions | None = None,
                     output: pb.OutputOptions | None = None) -> Iterator[pb.AnimateRequest]:
    """The request stream: the setup message, then the driving video in chunks. The inputs are checked when this
    is called (``animate_setup``), not when the stream is iterated."""
    setup, video = animate_setup(source, driving, options, output)
    return _stream(pb.AnimateRequest, setup, video)


def _stream(message, setup, video: Path | None) -> Iterator:
    yield message(setup=setup)
    if video is not None:
        for chunk in _chunks(video):
            yield message(driving_chunk=chunk)


def extract_requests(video: Path, crop_driving_video: str = "auto") -> Iterator[pb.ExtractMotionRequest]:
    """The ExtractMotion request stream; the video file is checked when this is called."""
    video = _checked_file(video, "driving video")
    setup = pb.ExtractMotionSetup(driving_video=pb.DrivingVideo(size_bytes=video.stat().st_size, filename=video.name),
                                  crop_driving_video=DRIVING_CROP[crop_driving_video])
    return _stream(pb.ExtractMotionRequest, setup, video)


class _Output:
    """Writes the MP4 as it arrives to ``<path>.part`` and renames it on success."""

    def __init__(self, path: Path | None, sink: BinaryIO | None):
        self.path = Path(path) if path else None
        self.part = self.path.with_name(self.path.name + ".part") if self.path else None
        self.sink = sink
        self._file: BinaryIO | None = None

    def write(self, data: bytes) -> None:
        if self.sink is not None:
            self.sink.write(data)
        if self.part is not None:
            if self._file is None:
                self.part.parent.mkdir(parents=True, exist_ok=True)
                self._file = open(self.part, "wb")
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
        """Animate; the MP4 goes to ``output`` (a path) and/or ``sink`` (a binary file). Returns the summary."""
        out = _Output(output, sink)
        requests = _animate_call(source, driving, crf, audio, low_latency, options)
        summary = None
        try:
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

    def extract_motion(self, video: Path, crop_driving_video: str = "auto",
                       timeout: float | None = None) -> pb.MotionTemplate:
        return self.stub.ExtractMotion(extract_requests(video, crop_driving_video), timeout=timeout).template

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
        out = _Output(output, sink)
        requests = _aiter(_animate_call(source, driving, crf, audio, low_latency, options))
        summary = None
        try:
            async for response in self.stub.AnimatePortrait(requests, timeout=timeout):
                summary = _handle(response, out, on_progress) or summary
        except BaseException:
            out.discard()
            raise
        out.finish()
        return summary

    async def extract_motion(self, video: Path, crop_driving_video: str = "auto",
                             timeout: float | None = None) -> pb.MotionTemplate:
        response = await self.stub.ExtractMotion(_aiter(extract_requests(video, crop_driving_video)),
                                                 timeout=timeout)
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


async def _aiter(requests: Iterator) -> AsyncIterator:
    for request in requests:
        yield request


def _animate_call(source: Path | bytes, driving: Path | pb.MotionTemplate, crf: int | None, audio: bool | None,
                  low_latency: bool | None, options: dict) -> Iterator[pb.AnimateRequest]:
    """The request stream of ``animate`` (both clients): animation options by name, output options."""
    keyframes, fps = options.pop("keyframes", None), options.pop("keyframes_fps", None)
    if keyframes is not None:
        driving = keyframes_message(keyframes, fps)
    return animate_requests(source, driving, animation_options(**options),
                            pb.OutputOptions(crf=crf, audio=audio, low_latency=low_latency))


def _handle(response: pb.AnimateResponse, out: _Output, on_progress: ProgressCallback | None) -> pb.Summary | None:
    kind = response.WhichOneof("event")
    if kind == "video":
        out.write(response.video.data)
    elif kind == "progress" and on_progress:
        on_progress(response.progress)
    elif kind == "summary":
        return response.summary
    return None
