"""AnimatePortrait for an image source: the official pipeline, stage by stage, streaming chunks of frames.

source bytes -> decode (EXIF, longest side <= 1280, even sides) -> face crop -> source motion (Triton) ->
for each driving chunk: keypoints (numpy + stitching/retargeting MLPs in Triton) -> render (Triton ``render_i420``:
appearance recomputed inside Triton, the 8 MiB feature volume never crosses the network) -> paste-back ->
H.264 encode -> MP4 fragments streamed to the client. The next chunk is decoded and rendered while this one is
pasted back and encoded (``read_ahead``, one chunk ahead).
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import AsyncIterator, Callable

import cv2
import numpy as np

from protos.liveportrait.v1 import portrait_animator_pb2 as pb

from .driving import DrivingSource, require_ratios
from .edit import EditDeltas, deltas, keypoint_offsets
from .errors import InvalidRequest, NoFace
from .face import FaceAnalyzer, NoFaceError, decode_image, limit_size
from .face.geometry import crop_rect, crop_transform_from_rect, resize_crop, warp_crop
from .keypoints import (KeypointComposer, Motion, RetargetPlan, SourceKeypoints, combine_retargeting,
                        combined_eye_ratio, combined_lip_ratio, retarget_plan,
                        source_keypoints)
from .media import EncodeSettings, FragmentedMp4Writer
from .options import AnimateOptions
from .paste import PasteBack, feathered_mask
from .read_ahead import read_ahead
from .smoothing import MotionSmoother
from .templates import fps_to_proto
from .timing import Timings
from .triton_client import RequestRunner

MIME = 'video/mp4; codecs="avc1.640028"'
F32 = np.float32


@dataclass(frozen=True)
class Source:
    image: np.ndarray  # full-resolution RGB (after the size limit)
    crop_256: np.ndarray  # network input
    M_c2o: np.ndarray | None  # crop -> image (None without cropping)
    eye_ratio: tuple[float, float] | None
    lip_ratio: float | None
    box: np.ndarray | None


@dataclass
class RequestContext:
    runner: RequestRunner
    analyzer: FaceAnalyzer
    timings: Timings
    frames_rendered: Callable[[int], None]  # called with the number of frames of each rendered chunk
    weights: str = ""


async def prepare_source(data: bytes, options: AnimateOptions, ctx: RequestContext) -> Source:
    with ctx.timings.stage("decode"):
        image = await asyncio.to_thread(
            lambda: limit_size(decode_image(data), options.source_max_dim, options.source_division))
    with ctx.timings.stage("detect"):
        if options.model_set == "animal":
            return await asyncio.to_thread(animal_source, image, options)
        if options.crop_source:
            try:
                crop = await ctx.analyzer.source_crop(image, options.face_index, options.face_order,
                                                      options.face_hint)
            except NoFaceError as exc:
                raise NoFace(str(exc)) from None
            return Source(image, crop.image_256, crop.M_c2o, crop.eye_ratio, crop.lip_ratio, crop.face.box)
        faces = await ctx.analyzer.detect(image, options.face_order, options.face_hint)
        face = faces[0] if faces else None
        crop_256 = cv2.resize(image, (256, 256))  # official: the whole image, resized
        return Source(image, crop_256, None, face.eye_ratio if face else None, face.lip_ratio if face else None,
                      None)


def animal_source(image: np.ndarray, options: AnimateOptions) -> Source:
    """Animal mode (no animal detector): the whole image resized (``crop_source: false``, official), or the crop of
    the ``face_hint`` box: the box's corners as the crop points with an upright axis (no rotation), scaled by
    ``crop_scale`` and shifted by ``crop_vy_ratio`` like the official crop around landmarks. No eye/lip ratios (the
    animal pipeline has no retargeting)."""
    if not options.crop_source:
        return Source(image, cv2.resize(image, (256, 256)), None, None, None, None)
    x1, y1, x2, y2 = (float(v) for v in options.face_hint)
    corners = np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], F32)
    up = np.array([[(x1 + x2) / 2, y1], [(x1 + x2) / 2, y2]], F32)
    crop = options.source_crop
    transform = crop_transform_from_rect(crop_rect(corners, crop.scale, 0.0, crop.vy_ratio, anchors=up), crop.dsize,
                                         rotate=False)
    crop_512 = warp_crop(image, transform)
    return Source(image, resize_crop(crop_512), transform.M_c2o, None, None, np.array([x1, y1, x2, y2]))


class KeypointStage:
    """Driving keypoints of each chunk: composition, retargeting, stitching and the final multiplier."""

    def __init__(self, source: Source, keypoints: SourceKeypoints, options: AnimateOptions, driving_is_video: bool,
                 runner: RequestRunner):
        self.source = source
        self.kp = keypoints
        self.composer = KeypointComposer(keypoints, options.keypoints, driving_is_video)
        self.plan: RetargetPlan = retarget_plan(options.keypoints, source.eye_ratio is not None, source.lip_ratio)
        self.runner = runner
        self.lip_normalization: np.ndarray | None = None
        self.edit: EditDeltas | None = deltas(options.edit) if options.edit is not None else None

    async def start(self) -> None:
        if self.plan.add_lip_normalization:
            ratio = combined_lip_ratio(self.source.lip_ratio, np.zeros(1, F32))
            self.lip_normalization = (await self._mlp("retarget_lip", "lip_ratio", ratio))[0]

    async def __call__(self, motion: Motion) -> np.ndarray:
        plan = self.plan
        require_ratios(motion, plan.eye, plan.lip)
        x = self.composer.compose(motion)
        if plan.eye or plan.lip:
            eye = lip = None
            if plan.eye:
                eye = await self._mlp("retarget_eye", "eye_ratio",
                                      combined_eye_ratio(self.source.eye_ratio, motion.eye_ratio))
            if plan.lip:
                lip = await self._mlp("retarget_lip", "lip_ratio",
                                      combined_lip_ratio(self.source.lip_ratio, motion.lip_ratio))
            x = combine_retargeting(x, self.kp.x_s, plan, eye, lip)
        edits = getattr(motion, "edits", None) or ([self.edit] * len(motion) if self.edit is not None else None)
        if edits:
            x = await self._apply_edits(x, motion, edits)
        if plan.stitch:
            x = (await self.runner.infer("stitching", {"kp_source": self._x_s(len(x)), "kp_driving": x}))[
                "kp_driving_stitched"]
        if self.lip_normalization is not None:
            x = x + self.lip_normalization
        return self.composer.finalize(x)

    async def _apply_edits(self, x: np.ndarray, motion: Motion, edits: list[EditDeltas]) -> np.ndarray:
        """Each frame's edit on top of its keypoints (``edit.keypoint_offsets``), plus the eye/lip retargeting
        deltas toward the edit's target ratios (before stitching, as the official image retargeting does)."""
        new = self.composer.new_motion(motion)
        x = (x + keypoint_offsets(self.kp.kp, new.R, new.exp, new.scale, new.t, edits)).astype(F32)
        eyes, lips = [d.eye_ratio for d in edits], [d.lip_ratio for d in edits]
        if any(v is not None for v in eyes + lips) and self.source.eye_ratio is None:
            raise InvalidRequest("edit.eye_ratio and edit.lip_ratio need the source's landmarks, and no face was "
                                 "found in the source")
        if any(v is not None for v in eyes):
            targets = np.array([[v, v] for v in eyes], F32)
            x = x + await self._mlp("retarget_eye", "eye_ratio", combined_eye_ratio(self.source.eye_ratio, targets))
        if any(v is not None for v in lips):
            targets = np.array(lips, F32)
            x = x + await self._mlp("retarget_lip", "lip_ratio", combined_lip_ratio(self.source.lip_ratio, targets))
        return x

    async def _mlp(self, model: str, name: str, ratio: np.ndarray) -> np.ndarray:
        outputs = await self.runner.infer(model, {"kp_source": self._x_s(len(ratio)), name: ratio.astype(F32)})
        return outputs["delta"].reshape(-1, 21, 3)

    def _x_s(self, n: int) -> np.ndarray:
        return np.ascontiguousarray(np.broadcast_to(self.kp.x_s, (n, 21, 3)), F32)


def progress(stage: int, done: int = 0, total: int = 0, message: str = "") -> pb.AnimateResponse:
    return pb.AnimateResponse(progress=pb.Progress(stage=stage, frames_done=done, frames_total=total,
                                                   message=message))


async def animate(source_bytes: bytes, driving: DrivingSource, options: AnimateOptions,
                  ctx: RequestContext) -> AsyncIterator[pb.AnimateResponse]:
    """The response stream of one AnimatePortrait call (after the inputs arrived)."""
    started = time.perf_counter()
    total = driving.total_frames
    yield progress(pb.DECODE, 0, total, "decoding and analysing the source portrait")
    source = await prepare_source(source_bytes, options, ctx)
    yield progress(pb.MOTION, 0, total, "source motion")
    with ctx.timings.stage("motion"):
        outputs = await ctx.runner.infer("motion_extractor_u8", {"image_u8": source.crop_256[None]})
    keypoints = KeypointStage(source, source_keypoints(outputs), options, driving.is_video, ctx.runner)
    with ctx.timings.stage("keypoints"):
        await keypoints.start()
    paste = None
    if options.pastes_back and source.M_c2o is not None:
        paste = PasteBack(source.image, source.M_c2o, feathered_mask())
        height, width = source.image.shape[:2]
    else:
        height = width = 512
    writer = FragmentedMp4Writer(width, height, driving.fps,
                                 EncodeSettings(crf=options.crf, low_latency=options.low_latency),
                                 audio_from=driving.audio_path if options.audio else None)
    offset = done = 0
    try:
        smoother = MotionSmoother(float(driving.fps), options.smoothing) if options.smoothing else None
        async for planes in read_ahead(rendered_chunks(driving, keypoints, source, ctx, smoother)):
            with ctx.timings.stage("paste_back"):
                frames = await asyncio.to_thread(output_frames, planes, paste)
            with ctx.timings.stage("encode"):
                data = await asyncio.to_thread(writer.write, frames)
            done += len(frames)
            ctx.frames_rendered(len(frames))
            if data:
                yield pb.AnimateResponse(video=pb.VideoChunk(data=data, offset=offset, mime_type=MIME))
                offset += len(data)
            yield progress(pb.RENDER, done, max(total, done))
        with ctx.timings.stage("encode"):
            data = await asyncio.to_thread(writer.close)
    except BaseException:
        writer.abort()
        raise
    yield pb.AnimateResponse(video=pb.VideoChunk(data=data, offset=offset, mime_type=MIME))
    offset += len(data)
    yield pb.AnimateResponse(summary=summary(done, driving, width, height, offset, writer.has_audio, source, ctx,
                                             time.perf_counter() - started))


async def rendered_chunks(driving: DrivingSource, keypoints: KeypointStage, source: Source, ctx: RequestContext,
                          smoother: MotionSmoother | None = None) -> AsyncIterator[np.ndarray]:
    """The rendered crops of each driving chunk: driving motion (steadied by ``smoother`` when the request asks for
    it; one smoother per request, its state carried from chunk to chunk) -> keypoints -> render."""
    async for motion in driving.chunks():
        with ctx.timings.stage("keypoints"):
            if smoother is not None:
                motion = smoother(motion)
            kp_driving = await keypoints(motion)
        with ctx.timings.stage("render"):
            planes = await render(ctx.runner, source.crop_256, keypoints.kp.x_s, kp_driving)
        yield planes


async def render(runner: RequestRunner, crop_256: np.ndarray, x_s: np.ndarray, kp_driving: np.ndarray) -> np.ndarray:
    """The 512x512 crops of a chunk as planar YUV 4:2:0 ([n, 768, 512] uint8), one ``render_i420`` call.

    Half the bytes of RGB (~0.59 MB per frame with the source crop going in); the video is encoded as yuv420p anyway.
    """
    n = len(kp_driving)
    outputs = await runner.infer("render_i420", {
        "source_u8": np.broadcast_to(crop_256, (n, 256, 256, 3)),
        "kp_source": np.broadcast_to(x_s, (n, 21, 3)).astype(F32),
        "kp_driving": kp_driving.astype(F32, copy=False),
    })
    return outputs["image_i420"]


def output_frames(planes: np.ndarray, paste: PasteBack | None) -> list[np.ndarray]:
    """The video frames of a rendered chunk: RGB, pasted back into the source when pasting (runs in a worker
    thread, off the event loop)."""
    crops = [cv2.cvtColor(p, cv2.COLOR_YUV2RGB_I420) for p in planes]
    return [paste(c) for c in crops] if paste else crops


def weights_warnings(weights: str) -> list[str]:
    if weights.startswith("synthetic"):
        return [f"synthetic weights ({weights}): the output is structured noise, not a face; serve a "
                "model repository exported from the official LivePortrait weights for real results"]
    return []


def summary(frames: int, driving: DrivingSource, width: int, height: int, size: int, has_audio: bool,
            source: Source, ctx: RequestContext, seconds: float) -> pb.Summary:
    warnings = weights_warnings(ctx.weights)
    traffic = ctx.runner.traffic
    return pb.Summary(
        frames=frames, fps=fps_to_proto(driving.fps), width=width, height=height, video_bytes=size,
        has_audio=has_audio, warnings=warnings, weights=ctx.weights, seconds=seconds,
        timings=[pb.StageTiming(stage=k, seconds=v) for k, v in ctx.timings.seconds.items()],
        triton_bytes_sent=traffic.sent, triton_bytes_received=traffic.received,
        source_face_box=[] if source.box is None else [float(v) for v in source.box],
    )
