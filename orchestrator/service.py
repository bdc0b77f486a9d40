"""The ``liveportrait.v1.PortraitAnimator`` gRPC service: request intake, limits, error mapping, metrics."""
from __future__ import annotations

import asyncio
import logging
import time
import uuid
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import AsyncIterator

import grpc
import numpy as np

from protos.liveportrait.v1 import portrait_animator_pb2 as pb
from protos.liveportrait.v1 import portrait_animator_pb2_grpc as pb_grpc

from .admission import Admission
from .pipeline.driving import VideoDriving
from .editing import SessionStore, edit_image, session_source
from .errors import FailedPrecondition, InvalidRequest, Unavailable, status_of
from .face import ORDERINGS, CropConfig, FaceAnalyzer, FaceSelectionError, decode_image, make_analyzer
from .keypoints import Motion
from .live import LiveAnimator, LiveSession, LiveStreams, live_options, setup_message
from .live.voice import VoiceSession, voice_options
from .media import probe
from .metrics import Metrics
from .options import (animate_options, audio_driving_options, driving_crop_options, edit_request_options,
                      video_source_options)
from .pipeline import ImageAnimation, RequestContext, animate, weights_warnings
from .audio.features import FPS
from .pipeline.audio_animation import audio_animation, audio_template_motion
from .pipeline.context import uncounted
from .pipeline.motion_cache import MotionCache
from .pipeline.video_source import VideoAnimation
from .request_inputs import RequestInputs, face_drivings, keyframe_options
from .quotas import Caller, QuotaExceeded, current_caller
from .quoting import bounded, quote
from .templates import Template, to_proto
from .timing import Timings
from .triton_client import ModelSetRunner, RequestRunner, Traffic, TritonRunner
from .uploads import Requests

log = logging.getLogger("liveportrait.orchestrator")
SHUTTING_DOWN = "the server is shutting down; retry (another replica will take the request)"
DRAIN_OVER = ("the server is shutting down and this request did not finish within its drain time (--drain-seconds); "
              "retry (another replica will take the request)")


@dataclass(frozen=True)
class Limits:
    max_source_bytes: int = 20 * 1024 * 1024
    max_driving_bytes: int = 512 * 1024 * 1024
    max_frames: int = 18_000  # 10 minutes at 30 fps
    max_audio_s: float = 600.0  # seconds of a driving audio (orchestrator/audio_input.py)
    max_request_s: float = 3600.0
    chunk_frames: int = 8  # frames per Triton batch (the models' max_batch_size)
    max_faces: int = 8  # faces one AnimatePortrait animates (options.faces); <= chunk_frames (one render batch)
    edit_sessions: int = 64  # prepared sources kept for EditPortrait (LRU)
    edit_session_bytes: int = 512 * 1024 * 1024  # their total size
    edit_session_ttl_s: float = 900.0  # idle seconds before a session is dropped
    # AnimateStream (live animation; orchestrator/live/)
    live_max_streams: int = 8  # streams open at once; beyond: RESOURCE_EXHAUSTED at setup
    live_max_fps: float = 30.0  # driving frames per second per stream
    live_max_session_s: float = 1800.0  # length of one stream
    live_idle_timeout_s: float = 30.0  # seconds without a driving frame before a stream is ended
    live_max_frame_bytes: int = 4 * 1024 * 1024  # one driving frame message
    live_max_frame_side: int = 1920  # pixels, each side of a driving frame
    live_max_audio_ahead_s: float = 10.0  # voice mode: seconds of audio that may wait to be animated
    motion_cache_bytes: int = 64 * 1024 * 1024  # driving motion kept for repeated driving videos (0: off)


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
        self.drain_over = False  # set when the drain time is over: what still runs ends with UNAVAILABLE
        self._calls: dict[asyncio.Task, object] = {}  # running calls: their tasks and gRPC contexts
        self.sessions = SessionStore(limits.edit_sessions, limits.edit_session_bytes, limits.edit_session_ttl_s)
        self.live_streams = LiveStreams(limits.live_max_streams, metrics)
        self.motion_cache = MotionCache(limits.motion_cache_bytes, metrics)
        self.inputs = RequestInputs(limits, metrics, spool_dir, self.motion_cache, state)

    # ---- RPCs ------------------------------------------------------------------------------------------------

    async def AnimatePortrait(self, request_iterator, context) -> AsyncIterator[pb.AnimateResponse]:
        async with self._call("AnimatePortrait", context) as runner:
            requests = Requests(request_iterator)
            setup = await self._first(requests, "setup")
            options = animate_options(setup.options, setup.output)
            if setup.WhichOneof("driving") == "driving_keyframes":
                options = keyframe_options(options)
            if options.model_set != "human":
                runner = ModelSetRunner(runner, options.model_set, missing_model_set(options.model_set))
            source_video = setup.WhichOneof("source") == "source_video"
            audio_options = None
            if setup.WhichOneof("driving") == "driving_audio":
                audio_options = audio_driving_options(options, setup)
            if source_video:
                options = video_source_options(options, setup)
            else:
                self.inputs.check_source(setup.source_image)
            timings = Timings()
            need_ratios = options.keypoints.retargeting
            analyzer = self._analyzer(runner, options.source_crop)
            async with AsyncExitStack() as uploads:
                if source_video:
                    source = await uploads.enter_async_context(self.inputs.source_video(setup, requests, analyzer, options,
                                                                                  timings))
                driving = await uploads.enter_async_context(self.inputs.driving(setup, requests, runner, analyzer, options,
                                                                          need_ratios, timings))
                caller = current_caller.get()
                ctx = RequestContext(runner, analyzer, timings, self._frames_rendered(caller), self.state.weights)
                if source_video:
                    animation = VideoAnimation(source, driving, options, ctx, setup.output.fps_and_audio_from_driving)
                elif audio_options is not None:
                    animation = audio_animation(setup.source_image, driving, audio_options, options, ctx,
                                                self.limits.chunk_frames)
                else:
                    animation = ImageAnimation(setup.source_image, driving, options, ctx,
                                               await face_drivings(setup, options, self.limits, ctx),
                                               self.limits.max_faces, self.limits.chunk_frames)
                if caller is not None:  # the API key's max video length (quotas)
                    caller.check_length(animation.total_frames)
                async for response in animate(animation, options, ctx):
                    if response.HasField("video"):
                        self.metrics.client_bytes.labels("out").inc(len(response.video.data))
                    yield response
            for stage, seconds in timings.seconds.items():
                self.metrics.stage_latency.labels(stage).observe(seconds)

    async def ExtractMotion(self, request_iterator, context) -> pb.ExtractMotionResponse:
        async with self._call("ExtractMotion", context) as runner:
            setup = await self._first(request_iterator, "setup")
            if setup.HasField("driving_audio"):
                return await self._extract_audio_motion(setup, Requests(request_iterator), runner)
            if not setup.HasField("driving_video"):
                raise InvalidRequest("ExtractMotion needs setup.driving_video (or setup.driving_audio with "
                                     "setup.source_image) followed by the file's bytes")
            crop = driving_crop_options(setup.crop_driving_video,
                                        setup.driving_crop_scale if setup.HasField("driving_crop_scale") else 2.2,
                                        setup.driving_crop_vy_ratio if setup.HasField("driving_crop_vy_ratio")
                                        else -0.1)
            timings = Timings()
            with self.inputs.spool() as path:
                await self.inputs.receive(Requests(request_iterator), path, setup.driving_video.size_bytes)
                info = probe(path)
                driving = VideoDriving(path, info, runner, self._analyzer(runner, CropConfig()), crop, True, timings,
                                       self.limits.chunk_frames, self.limits.max_frames, audio=False,
                                       cache=self.motion_cache, models=f"human {self.state.weights}")
                parts = [motion async for motion in driving.chunks()]
            motion = Motion.concat(parts)
            template = Template(motion, info.fps, setup.driving_video.filename or "ExtractMotion")
            for stage, seconds in timings.seconds.items():
                self.metrics.stage_latency.labels(stage).observe(seconds)
            return pb.ExtractMotionResponse(template=to_proto(template))

    async def _extract_audio_motion(self, setup: pb.ExtractMotionSetup, requests: Requests,
                                    runner: RequestRunner) -> pb.ExtractMotionResponse:
        """ExtractMotion of a voice: the motion AnimatePortrait's driving_audio drives ``setup.source_image``
        with, at 25 fps (``audio_animation.audio_template_motion``)."""
        if setup.HasField("driving_video"):
            raise InvalidRequest("ExtractMotion takes setup.driving_video or setup.driving_audio, not both")
        if not setup.source_image:
            raise InvalidRequest("ExtractMotion of driving_audio needs setup.source_image: a voice's motion is "
                                 "generated for a portrait (its keypoints and pose)")
        self.inputs.check_source(setup.source_image)
        options = animate_options(setup.source_options, pb.OutputOptions(audio=False))
        audio_options = audio_driving_options(options, pb.AnimateSetup(
            source_image=setup.source_image, driving_audio=setup.driving_audio, options=setup.source_options))
        timings = Timings()
        with self.inputs.spool() as path:
            with timings.stage("receive"):
                await self.inputs.receive(requests, path, setup.driving_audio.size_bytes, what="driving audio")
            audio = await self.inputs.driving_audio(path, False, timings)
        ctx = RequestContext(runner, self._analyzer(runner, options.source_crop), timings, uncounted,
                             self.state.weights)
        motion = await audio_template_motion(setup.source_image, audio, audio_options, options, ctx,
                                             self.limits.chunk_frames)
        template = Template(motion, Fraction(FPS), setup.driving_audio.filename or "ExtractMotion")
        for stage, seconds in timings.seconds.items():
            self.metrics.stage_latency.labels(stage).observe(seconds)
        return pb.ExtractMotionResponse(template=to_proto(template), warnings=weights_warnings(self.state.weights))

    async def DetectFaces(self, request: pb.DetectFacesRequest, context) -> pb.DetectFacesResponse:
        async with self._call("DetectFaces", context) as runner:
            self.inputs.check_source(request.image, "image")
            if request.ordering and request.ordering not in ORDERINGS:
                raise InvalidRequest(f"unknown ordering {quote(request.ordering)}; choose one of "
                                     f"{', '.join(ORDERINGS)}")
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
                self.inputs.check_source(request.source_image)
            timings = Timings()
            ctx = RequestContext(runner, self._analyzer(runner, options.source.source_crop), timings, uncounted,
                                 self.state.weights)
            session_id, prepared, reused = await session_source(self.sessions, request.session_id,
                                                                request.source_image, options.source, ctx)
            data, width, height = await edit_image(prepared, options.edit, options, ctx)
            if (caller := current_caller.get()) is not None:
                await caller.charge(1)  # one rendered frame against the API key's frames-per-minute quota
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

    async def AnimateStream(self, request_iterator, context) -> AsyncIterator[pb.LiveResponse]:
        """Live animation (orchestrator/live): its own limit of open streams instead of the admission queue, and
        the session's length as its deadline."""
        limits = self.limits
        async with self._call("AnimateStream", context, self.live_streams.slot, limits.live_max_session_s) as runner:
            setup = await setup_message(self._first(request_iterator, "setup"), limits.live_idle_timeout_s)
            self.inputs.check_source(setup.source_image)
            options, output = live_options(setup, limits.live_max_fps)
            if options.model_set != "human":
                runner = ModelSetRunner(runner, options.model_set, missing_model_set(options.model_set))
            caller = current_caller.get()
            ctx = RequestContext(runner, self._analyzer(runner, options.source_crop), Timings(),
                                 self._frames_rendered(caller), self.state.weights)
            animator = LiveAnimator(setup.source_image, options, output, ctx, limits.live_max_frame_side)
            budget = caller.check_budget if caller is not None else None
            if setup.HasField("voice"):  # a live voice drives the portrait (orchestrator/live/voice.py)
                session = VoiceSession(animator, voice_options(setup, options), limits, self.metrics,
                                       lambda: self.draining, before_frame=budget,
                                       drop_late=setup.voice.drop_late_frames)
            else:
                session = LiveSession(animator, limits, self.metrics, lambda: self.draining, before_frame=budget)
            async for response in session.run(request_iterator):  # charged per rendered frame, as they go
                yield response

    # ---- helpers ---------------------------------------------------------------------------------------------

    @asynccontextmanager
    async def _call(self, method: str, context, slot=None, max_seconds: float | None = None
                    ) -> AsyncIterator[RequestRunner]:
        """Admission (``slot``: the admission queue unless given), deadline (``max_seconds``: the request limit unless
        given), metrics and error mapping around one RPC; yields the request's Triton runner."""
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        task = asyncio.current_task()
        self._calls[task] = context
        try:
            if self.draining:
                raise Unavailable(SHUTTING_DOWN)
            async with (slot or self.admission.slot)():
                limit = self.limits.max_request_s if max_seconds is None else max_seconds
                remaining = context.time_remaining()
                budget = limit if remaining is None else min(remaining, limit)
                yield RequestRunner(self.runner, Traffic(), time.monotonic() + budget)
        except asyncio.CancelledError:  # the client went away, or the drain time is over (``end_calls``)
            code = grpc.StatusCode.UNAVAILABLE if self.drain_over else grpc.StatusCode.CANCELLED
            raise
        except Exception as exc:  # every failure becomes a status; never a stack trace to the client
            status = status_of(exc)
            if status is None:
                incident = uuid.uuid4().hex[:12]
                log.exception("%s failed (incident %s)", method, incident)
                status = (grpc.StatusCode.INTERNAL, f"internal error (incident {incident})")
            code = status[0]
            trailers = exc.trailing_metadata() if isinstance(exc, QuotaExceeded) else ()  # retry-after-ms
            await context.abort(status[0], bounded(status[1]), trailing_metadata=trailers)
        finally:
            self._calls.pop(task, None)
            self.metrics.requests.labels(method, code.name).inc()
            self.metrics.request_latency.labels(method).observe(time.perf_counter() - started)

    async def end_calls(self) -> int:
        """The drain time is over: every call still running (or waiting for admission) ends now with UNAVAILABLE and
        a message in the project's words, and its work is cancelled. (Left to the gRPC server's stop, they would end
        with its "Cancelling all calls".) Returns how many there were."""
        self.drain_over = True
        calls = list(self._calls.items())
        for task, context in calls:
            if not context.done():
                try:
                    await context.abort(grpc.StatusCode.UNAVAILABLE, DRAIN_OVER)
                except grpc.aio.AbortError:  # abort() raises it in its caller: here, the stopping task
                    pass
            task.cancel()
        if calls:
            await asyncio.wait([task for task, _ in calls], timeout=5.0)
        return len(calls)

    def _frames_rendered(self, caller: Caller | None):
        """Counts rendered frames in the metrics and against the caller's API key (its frames-per-minute quota)."""
        async def rendered(frames: int) -> None:
            self.metrics.frames.inc(frames)
            if caller is not None:
                await caller.charge(frames)

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

    def _analyzer(self, runner: RequestRunner, crop: CropConfig) -> FaceAnalyzer:
        analyzer = make_analyzer(runner, self.face_stack)
        analyzer.config = replace(analyzer.config, crop=crop)
        return analyzer

def missing_model_set(model_set: str):
    def error(model: str) -> FailedPrecondition:
        return FailedPrecondition(
            f"this server does not serve the {model_set} models (Triton has no {model!r}): export them with "
            f"`liveportrait-export --model-set {model_set}` and serve that repository beside the human one "
            "(tritonserver --model-repository HUMAN --model-repository ANIMAL)")

    return error


def face_message(face) -> pb.Face:
    return pb.Face(box=[float(v) for v in face.box], score=float(face.score),
                   landmarks=np.asarray(face.landmarks, np.float32)[:, :2].reshape(-1).tolist(),
                   eye_ratio=[float(v) for v in face.eye_ratio], lip_ratio=float(face.lip_ratio),
                   crop_matrix=np.asarray(face.crop.M_o2c, np.float32).reshape(-1).tolist())


__all__ = ["Limits", "PortraitAnimatorService", "ServingState", "FaceSelectionError"]
