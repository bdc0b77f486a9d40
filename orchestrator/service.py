"""The ``liveportrait.v1.PortraitAnimator`` gRPC service: request intake, limits, error mapping, metrics."""
from __future__ import annotations

import asyncio
import logging
import tempfile
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import AsyncIterator

import grpc
import numpy as np

from protos.liveportrait.v1 import portrait_animator_pb2 as pb
from protos.liveportrait.v1 import portrait_animator_pb2_grpc as pb_grpc

from .admission import Admission
from .auth import Caller, current_caller
from .driving import ImageDriving, KeyframeDriving, TemplateDriving, VideoDriving
from .editing import SessionStore, edit_image, session_source
from .errors import FailedPrecondition, InvalidRequest, Unavailable, status_of
from .face import CropConfig, FaceAnalyzer, FaceSelectionError, decode_image, make_analyzer
from .keypoints import KeypointOptions, Motion
from .media import probe
from .metrics import Metrics
from .options import AnimateOptions, animate_options, driving_crop_options, edit_request_options, keyframes_from_proto
from .pipeline import RequestContext, animate, weights_warnings
from .templates import Template, from_proto, to_proto
from .timing import Timings
from .triton_client import ModelSetRunner, RequestRunner, Traffic, TritonRunner

log = logging.getLogger("liveportrait.orchestrator")


@dataclass(frozen=True)
class Limits:
    max_source_bytes: int = 20 * 1024 * 1024
    max_driving_bytes: int = 512 * 1024 * 1024
    max_frames: int = 18_000  # 10 minutes at 30 fps
    max_request_s: float = 3600.0
    chunk_frames: int = 8  # frames per Triton batch (the models' max_batch_size)
    edit_sessions: int = 64  # prepared sources kept for EditPortrait (LRU)
    edit_session_bytes: int = 512 * 1024 * 1024  # their total size
    edit_session_ttl_s: float = 900.0  # idle seconds before a session is dropped


@dataclass
class ServingState:
    """What the health watcher learnt about the served models."""

    weights: str = ""
    ready: bool = False


class PortraitAnimatorService(pb_grpc.PortraitAnimatorServicer):
    def __init__(self, runner: TritonRunner, metrics: Metrics, admission: Admission, limits: Limits,
                 state: ServingState, face_stack: str = "mediapipe", spool_dir: Path | None = None):
        self.runner = runner
        self.metrics = metrics
        self.admission = admission
        self.limits = limits
        self.state = state
        self.face_stack = face_stack
        self.spool_dir = spool_dir
        self.draining = False  # set on SIGTERM: new calls are refused with UNAVAILABLE, running ones finish
        self.sessions = SessionStore(limits.edit_sessions, limits.edit_session_bytes, limits.edit_session_ttl_s)

    # ---- RPCs ------------------------------------------------------------------------------------------------

    async def AnimatePortrait(self, request_iterator, context) -> AsyncIterator[pb.AnimateResponse]:
        async with self._call("AnimatePortrait", context) as runner:
            setup = await self._first(request_iterator, "setup")
            options = animate_options(setup.options, setup.output)
            if setup.WhichOneof("driving") == "driving_keyframes":
                options = keyframe_options(options)
            if options.model_set != "human":
                runner = ModelSetRunner(runner, options.model_set, missing_model_set(options.model_set))
            self._check_source(setup.source_image)
            timings = Timings()
            need_ratios = options.keypoints.retargeting
            analyzer = self._analyzer(runner, options.source_crop)
            async with self._driving(setup, request_iterator, runner, analyzer, options, need_ratios,
                                     timings) as driving:
                caller = current_caller.get()
                if caller is not None:  # the API key's max video length (quotas)
                    caller.check_length(driving.total_frames)
                ctx = RequestContext(runner, analyzer, timings, self._frames_rendered(caller), self.state.weights)
                async for response in animate(setup.source_image, driving, options, ctx):
                    if response.HasField("video"):
                        self.metrics.client_bytes.labels("out").inc(len(response.video.data))
                    yield response
            for stage, seconds in timings.seconds.items():
                self.metrics.stage_latency.labels(stage).observe(seconds)

    async def ExtractMotion(self, request_iterator, context) -> pb.ExtractMotionResponse:
        async with self._call("ExtractMotion", context) as runner:
            setup = await self._first(request_iterator, "setup")
            if not setup.HasField("driving_video"):
                raise InvalidRequest("ExtractMotion needs setup.driving_video followed by the video's bytes")
            crop = driving_crop_options(setup.crop_driving_video,
                                        setup.driving_crop_scale if setup.HasField("driving_crop_scale") else 2.2,
                                        setup.driving_crop_vy_ratio if setup.HasField("driving_crop_vy_ratio")
                                        else -0.1)
            timings = Timings()
            with self._spool() as path:
                await self._receive_video(request_iterator, path, setup.driving_video.size_bytes)
                info = probe(path)
                driving = VideoDriving(path, info, runner, self._analyzer(runner, CropConfig()), crop, True, timings,
                                       self.limits.chunk_frames, self.limits.max_frames, audio=False)
                parts = [motion async for motion in driving.chunks()]
            motion = Motion(*(np.concatenate([getattr(p, f) for p in parts])
                              for f in ("scale", "R", "exp", "t", "eye_ratio", "lip_ratio")))
            template = Template(motion, info.fps, setup.driving_video.filename or "ExtractMotion")
            for stage, seconds in timings.seconds.items():
                self.metrics.stage_latency.labels(stage).observe(seconds)
            return pb.ExtractMotionResponse(template=to_proto(template))

    async def DetectFaces(self, request: pb.DetectFacesRequest, context) -> pb.DetectFacesResponse:
        async with self._call("DetectFaces", context) as runner:
            self._check_source(request.image, "image")
            hint = None
            if request.hint:
                hint = np.asarray(request.hint, np.float64)
                if hint.shape != (4,):
                    raise InvalidRequest("hint must be [x1, y1, x2, y2]")
            image = await asyncio.to_thread(decode_image, request.image)
            analyzer = make_analyzer(runner, self.face_stack)
            faces = await analyzer.detect(image, request.ordering or None, hint)
            return pb.DetectFacesResponse(faces=[face_message(f) for f in faces], width=image.shape[1],
                                          height=image.shape[0])

    async def EditPortrait(self, request: pb.EditRequest, context) -> pb.EditResponse:
        async with self._call("EditPortrait", context) as runner:
            started = time.perf_counter()
            options = edit_request_options(request)
            if request.source_image:
                self._check_source(request.source_image)
            timings = Timings()
            ctx = RequestContext(runner, self._analyzer(runner, options.source.source_crop), timings, lambda _: None,
                                 self.state.weights)
            session_id, prepared, reused = await session_source(self.sessions, request.session_id,
                                                                request.source_image, options.source, ctx)
            data, width, height = await edit_image(prepared, options.edit, options, ctx)
            if (caller := current_caller.get()) is not None:
                caller.charge(1)  # one rendered frame against the API key's frames-per-minute quota
            self.sessions.trim()  # the first paste-back grows the session
            for stage, seconds in timings.seconds.items():
                self.metrics.stage_latency.labels(stage).observe(seconds)
            source = prepared.source
            return pb.EditResponse(
                image=data, mime_type=options.mime_type, width=width, height=height,
                source_face_box=[] if source.box is None else [float(v) for v in source.box],
                session_id=session_id, session_reused=reused,
                timings=[pb.StageTiming(stage=k, seconds=v) for k, v in timings.seconds.items()],
                warnings=weights_warnings(self.state.weights), weights=self.state.weights,
                seconds=time.perf_counter() - started,
                source_eye_ratio=[] if source.eye_ratio is None else [float(v) for v in source.eye_ratio],
                source_lip_ratio=source.lip_ratio or 0.0)

    # ---- helpers ---------------------------------------------------------------------------------------------

    @asynccontextmanager
    async def _call(self, method: str, context) -> AsyncIterator[RequestRunner]:
        """Admission, deadline, metrics and error mapping around one RPC; yields the request's Triton runner."""
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            if self.draining:
                raise Unavailable("the server is shutting down; retry (another replica will take the request)")
            async with self.admission.slot():
                remaining = context.time_remaining()
                budget = self.limits.max_request_s if remaining is None else min(remaining, self.limits.max_request_s)
                yield RequestRunner(self.runner, Traffic(), time.monotonic() + budget)
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        except Exception as exc:  # every failure becomes a status; never a stack trace to the client
            status = status_of(exc)
            if status is None:
                incident = uuid.uuid4().hex[:12]
                log.exception("%s failed (incident %s)", method, incident)
                status = (grpc.StatusCode.INTERNAL, f"internal error (incident {incident})")
            code = status[0]
            await context.abort(status[0], status[1])
        finally:
            self.metrics.requests.labels(method, code.name).inc()
            self.metrics.request_latency.labels(method).observe(time.perf_counter() - started)

    def _frames_rendered(self, caller: Caller | None):
        """Counts rendered frames in the metrics and against the caller's API key (its frames-per-minute quota)."""
        def rendered(frames: int) -> None:
            self.metrics.frames.inc(frames)
            if caller is not None:
                caller.charge(frames)

        return rendered

    async def _first(self, request_iterator, field: str):
        try:
            first = await anext(aiter(request_iterator))
        except StopAsyncIteration:
            raise InvalidRequest("the request stream is empty; send a setup message first") from None
        if first.WhichOneof("part") != field:
            raise InvalidRequest(f"the first message must be `{field}`")
        self.metrics.client_bytes.labels("in").inc(first.ByteSize())
        return getattr(first, field)

    def _check_source(self, data: bytes, what: str = "source_image") -> None:
        if not data:
            raise InvalidRequest(f"{what} is empty")
        if len(data) > self.limits.max_source_bytes:
            raise InvalidRequest(f"{what} is {len(data)} bytes, more than the limit of "
                                 f"{self.limits.max_source_bytes} bytes")

    def _analyzer(self, runner: RequestRunner, crop: CropConfig) -> FaceAnalyzer:
        analyzer = make_analyzer(runner, self.face_stack)
        analyzer.config = replace(analyzer.config, crop=crop)
        return analyzer

    @asynccontextmanager
    async def _driving(self, setup: pb.AnimateSetup, request_iterator, runner: RequestRunner,
                       analyzer: FaceAnalyzer, options: AnimateOptions, need_ratios: bool, timings: Timings):
        kind = setup.WhichOneof("driving")
        if kind == "driving_template":
            yield TemplateDriving(from_proto(setup.driving_template, self.limits.max_frames),
                                  self.limits.chunk_frames)
        elif kind == "driving_image":
            self._check_source(setup.driving_image, "driving_image")
            image = await asyncio.to_thread(decode_image, setup.driving_image)
            yield ImageDriving(image, runner, analyzer, options.driving_crop, need_ratios,
                               timings)
        elif kind == "driving_video":
            with self._spool() as path:
                with timings.stage("receive"):
                    await self._receive_video(request_iterator, path, setup.driving_video.size_bytes)
                info = probe(path)
                if info.frames > self.limits.max_frames:
                    raise InvalidRequest(f"the driving video has {info.frames} frames, more than the limit of "
                                         f"{self.limits.max_frames}")
                yield VideoDriving(path, info, runner, analyzer, options.driving_crop,
                                   need_ratios, timings, self.limits.chunk_frames, self.limits.max_frames,
                                   audio=options.audio)
        elif kind == "driving_keyframes":
            keyframes, fps = keyframes_from_proto(setup.driving_keyframes)
            yield KeyframeDriving(keyframes, fps, self.limits.chunk_frames, self.limits.max_frames)
        else:
            raise InvalidRequest("setup has no driving input: set driving_video, driving_image, driving_template or "
                                 "driving_keyframes")

    def _spool(self):
        return _SpoolFile(self.spool_dir)

    async def _receive_video(self, request_iterator, path: Path, announced: int) -> int:
        limit = self.limits.max_driving_bytes
        if announced > limit:
            raise InvalidRequest(f"the driving video is {announced} bytes, more than the limit of {limit} bytes")
        size = 0
        with open(path, "wb") as spool:
            async for message in request_iterator:
                if message.WhichOneof("part") != "driving_chunk":
                    raise InvalidRequest("after the setup only driving_chunk messages may follow")
                size += len(message.driving_chunk)
                self.metrics.client_bytes.labels("in").inc(len(message.driving_chunk))
                if size > limit:
                    raise InvalidRequest(f"the driving video exceeds the limit of {limit} bytes")
                spool.write(message.driving_chunk)
        if size == 0:
            raise InvalidRequest("the driving video is empty: send its bytes as driving_chunk messages after setup")
        if announced and size != announced:
            raise InvalidRequest(f"the driving video was announced as {announced} bytes (setup size_bytes) but "
                                 f"{size} bytes arrived; the upload is incomplete or size_bytes is wrong")
        return size


class _SpoolFile:
    """A temporary file for one uploaded video, removed on exit."""

    def __init__(self, directory: Path | None):
        self.directory = directory

    def __enter__(self) -> Path:
        handle = tempfile.NamedTemporaryFile(prefix="driving-", suffix=".bin", dir=self.directory, delete=False)
        handle.close()
        self.path = Path(handle.name)
        return self.path

    def __exit__(self, *exc) -> None:
        self.path.unlink(missing_ok=True)


def missing_model_set(model_set: str):
    def error(model: str) -> FailedPrecondition:
        return FailedPrecondition(
            f"this server does not serve the {model_set} models (Triton has no {model!r}): export them with "
            f"`liveportrait-export --model-set {model_set}` and serve that repository beside the human one "
            "(tritonserver --model-repository HUMAN --model-repository ANIMAL)")

    return error


def keyframe_options(options: AnimateOptions) -> AnimateOptions:
    """Keyframes drive the source's own motion: relative, no driving retargeting, no smoothing (their motion is
    exact); only stitching is kept."""
    if options.edit is not None:
        raise InvalidRequest("options.edit does not apply to driving_keyframes: put the edit in the keyframes")
    if options.model_set != "human":
        raise InvalidRequest(f"driving_keyframes are not available with model_set {options.model_set.upper()}: "
                             "drive an animal with a video, an image or a motion template")
    return replace(options, keypoints=KeypointOptions(stitching=options.keypoints.stitching), smoothing=None)


def face_message(face) -> pb.Face:
    return pb.Face(box=[float(v) for v in face.box], score=float(face.score),
                   landmarks=np.asarray(face.landmarks, np.float32)[:, :2].reshape(-1).tolist(),
                   eye_ratio=[float(v) for v in face.eye_ratio], lip_ratio=float(face.lip_ratio),
                   crop_matrix=np.asarray(face.crop.M_o2c, np.float32).reshape(-1).tolist())


__all__ = ["Limits", "PortraitAnimatorService", "ServingState", "FaceSelectionError"]
