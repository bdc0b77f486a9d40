"""What a request brings: its source (an image's checks, a source video spooled), its driving input (a template,
an image, a video, keyframes or a voice, each checked against the server's limits) and the per-face driving inputs.
The servicer (``service.py``) asks for them; uploads are spooled in this process's spool folder and removed when the
call ends."""
from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from protos.liveportrait.v1 import portrait_animator_pb2 as pb

from .audio_input import DrivingAudio, decode_audio, probe_audio
from .errors import InvalidRequest
from .face import FaceAnalyzer, InvalidImageError, decode_image
from .keypoints import KeypointOptions
from .media import probe
from .metrics import Metrics
from .options import AnimateOptions, keyframes_from_proto
from .pipeline import RequestContext
from .pipeline.driving import ImageDriving, KeyframeDriving, TemplateDriving, VideoDriving
from .pipeline.image_source import FaceDriving
from .pipeline.motion_cache import MotionCache
from .pipeline.video_source import SourceVideo
from .templates import InvalidTemplateError, from_proto
from .timing import Timings
from .triton_client import RequestRunner
from .uploads import Requests, SpoolFile, receive_video

if TYPE_CHECKING:
    from .service import Limits, ServingState


class RequestInputs:
    """The server's limits applied to what requests bring, and the uploads they spool."""

    def __init__(self, limits: "Limits", metrics: Metrics, spool_dir: Path | None, motion_cache: MotionCache,
                 state: "ServingState"):
        self.limits = limits
        self.metrics = metrics
        self.spool_dir = spool_dir
        self.motion_cache = motion_cache
        self.state = state

    def check_source(self, data: bytes, what: str = "source_image") -> None:
        if not data:
            raise InvalidRequest(f"{what} is empty")
        if len(data) > self.limits.max_source_bytes:
            raise InvalidRequest(f"{what} is {len(data)} bytes, more than the limit of "
                                 f"{self.limits.max_source_bytes} bytes")

    @asynccontextmanager
    async def source_video(self, setup: pb.AnimateSetup, requests: Requests, analyzer: FaceAnalyzer,
                            options: AnimateOptions, timings: Timings):
        """The uploaded source video, spooled (removed when the call ends)."""
        with self.spool() as path:
            with timings.stage("receive"):
                await self.receive(requests, path, setup.source_video.size_bytes, "source_chunk")
            info = probe(path, "source video")
            if info.frames > self.limits.max_frames:
                raise InvalidRequest(f"the source video has {info.frames} frames, more than the limit of "
                                     f"{self.limits.max_frames}")
            yield SourceVideo(path, info, analyzer, options, timings, self.limits.chunk_frames, self.limits.max_frames)

    @asynccontextmanager
    async def driving(self, setup: pb.AnimateSetup, request_iterator, runner: RequestRunner,
                       analyzer: FaceAnalyzer, options: AnimateOptions, need_ratios: bool, timings: Timings):
        kind = setup.WhichOneof("driving")
        if kind == "driving_template":
            yield TemplateDriving(from_proto(setup.driving_template, self.limits.max_frames),
                                  self.limits.chunk_frames)
        elif kind == "driving_image":
            self.check_source(setup.driving_image, "driving_image")
            image = await asyncio.to_thread(decode_image, setup.driving_image)
            yield ImageDriving(image, runner, analyzer, options.driving_crop, need_ratios,
                               timings)
        elif kind == "driving_video":
            with self.spool() as path:
                with timings.stage("receive"):
                    await self.receive(request_iterator, path, setup.driving_video.size_bytes)
                info = probe(path)
                if info.frames > self.limits.max_frames:
                    raise InvalidRequest(f"the driving video has {info.frames} frames, more than the limit of "
                                         f"{self.limits.max_frames}")
                yield VideoDriving(path, info, runner, analyzer, options.driving_crop,
                                   need_ratios, timings, self.limits.chunk_frames, self.limits.max_frames,
                                   audio=options.audio, cache=self.motion_cache,
                                   models=f"{options.model_set} {self.state.weights}")
        elif kind == "driving_keyframes":
            keyframes, fps = keyframes_from_proto(setup.driving_keyframes)
            yield KeyframeDriving(keyframes, fps, self.limits.chunk_frames, self.limits.max_frames)
        elif kind == "driving_audio":
            with self.spool() as path:
                with timings.stage("receive"):
                    await self.receive(request_iterator, path, setup.driving_audio.size_bytes,
                                              what="driving audio")
                yield await self.driving_audio(path, options.audio, timings)
        else:
            raise InvalidRequest("setup has no driving input: set driving_video, driving_image, driving_template, "
                                 "driving_keyframes or driving_audio")

    async def driving_audio(self, path: Path, mux: bool, timings: Timings) -> DrivingAudio:
        """The spooled driving audio decoded to 16 kHz mono (refused early when its header is over the limit)."""
        limit = self.limits.max_audio_s
        with timings.stage("decode"):
            await asyncio.to_thread(probe_audio, path, limit)
            samples = await asyncio.to_thread(decode_audio, path, limit)
        audio = DrivingAudio(samples, path if mux else None)
        if audio.total_frames > self.limits.max_frames:
            raise InvalidRequest(f"the driving audio makes {audio.total_frames} frames at 25 fps, more than the limit "
                                 f"of {self.limits.max_frames}")
        return audio

    def spool(self):
        return SpoolFile(self.spool_dir)

    async def receive(self, requests: Requests, path: Path, announced: int, part: str = "driving_chunk",
                             what: str | None = None) -> int:
        return await receive_video(requests, path, announced, self.limits.max_driving_bytes, part,
                                   self.metrics.client_bytes.labels("in").inc, what)


async def face_drivings(setup: pb.AnimateSetup, options: AnimateOptions, limits: Limits,
                        ctx: RequestContext) -> dict[int, FaceDriving]:
    """``setup.face_drivings``: the faces with their own driving input (an image or a motion template), by position
    among the animated faces; the others follow the main driving input."""
    if setup.face_drivings and options.faces is None:
        raise InvalidRequest("face_drivings need options.faces (the faces to animate)")
    own: dict[int, FaceDriving] = {}
    for i, message in enumerate(setup.face_drivings):
        label = f"face_drivings[{i}]"
        if message.face in own:
            raise InvalidRequest(f"{label} drives face {message.face}, which {own[message.face].label} drives too")
        kind = message.WhichOneof("driving")
        if kind is None:
            raise InvalidRequest(f"{label} has no driving input: set driving_image or driving_template")
        if len(message.driving_image) > limits.max_source_bytes:
            raise InvalidRequest(f"{label}.driving_image is {len(message.driving_image)} bytes, more than the limit "
                                 f"of {limits.max_source_bytes} bytes")
        try:
            if kind == "driving_template":
                driving = TemplateDriving(from_proto(message.driving_template, limits.max_frames), limits.chunk_frames)
            else:
                image = await asyncio.to_thread(decode_image, message.driving_image)
                driving = ImageDriving(image, ctx.runner, ctx.analyzer, options.driving_crop,
                                       options.keypoints.retargeting, ctx.timings, f"{label}.driving_image")
        except (InvalidImageError, InvalidTemplateError) as exc:
            raise InvalidRequest(f"{label}.{kind}: {exc}") from None
        own[message.face] = FaceDriving(label, driving)
    return own


def keyframe_options(options: AnimateOptions) -> AnimateOptions:
    """Keyframes drive the source's own motion: relative, no driving retargeting, no smoothing (their motion is
    exact); only stitching is kept."""
    if options.edit is not None:
        raise InvalidRequest("options.edit does not apply to driving_keyframes: put the edit in the keyframes")
    if options.model_set != "human":
        raise InvalidRequest(f"driving_keyframes are not available with model_set {options.model_set.upper()}: "
                             "drive an animal with a video, an image or a motion template")
    return replace(options, keypoints=KeypointOptions(stitching=options.keypoints.stitching), smoothing=None)
