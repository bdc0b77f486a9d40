"""One live stream's animation: the source prepared once, then each driving frame on its own (batch of 1).

Per frame: decode (JPEG/PNG/... or raw I420) -> face tracking (``DrivingCropTracker``: detected once, followed by its
landmarks, re-detected when lost) -> motion (``motion_extractor_u8``) -> optional causal smoothing (One-Euro, the
capture times as its time steps) -> keypoints (``KeypointStage``: relative to the first frame with a face, or to the
client's reference frame; stitching/retargeting) -> ``render_i420`` (Triton's dynamic batcher groups the frames of
concurrent streams) -> paste-back -> JPEG or I420. A frame without a face is answered without an image.
"""
from __future__ import annotations

import asyncio
import io
import math
import time
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from protos.liveportrait.v1 import portrait_animator_pb2 as pb

from ..errors import InvalidRequest
from ..media import encode_image
from ..face.decode import ImageLimits, InvalidImageError, decode_image
from ..face.tracking import DrivingCropTracker, DrivingFrame, TrackerConfig
from ..keypoints import KeypointComposer, Motion, SourceKeypoints, source_keypoints
from ..options import AnimateOptions, animate_options
from ..pipeline import KeypointStage, RequestContext, Source, prepare_source, render, weights_warnings
from ..pipeline.driving import extract_motion
from ..pipeline.paste import PasteBack, feathered_mask
from ..pipeline.yuv_paste import I420Canvas
from ..smoothing import MotionSmoother
from ..timing import Timings

F32 = np.float32
FORMATS = (pb.FRAME_ENCODED, pb.FRAME_I420)
MIN_SIDE = 16


@dataclass(frozen=True)
class LiveOutput:
    """How a stream answers: the output format, the JPEG quality and the client's nominal frame rate."""

    format: int = pb.FRAME_ENCODED
    jpeg_quality: int = 85
    fps: float = 25.0


def live_options(setup: pb.LiveSetup, max_fps: float) -> tuple[AnimateOptions, LiveOutput]:
    """The setup's options, checked (INVALID_ARGUMENT naming the field)."""
    options = animate_options(setup.options, pb.OutputOptions())
    if options.faces is not None:
        raise InvalidRequest("options.faces (several faces) is not available in AnimateStream, which animates one "
                             "face: choose it with face_index / face_hint")
    fps = float(setup.fps) if setup.HasField("fps") else min(25.0, max_fps)
    if not math.isfinite(fps) or fps <= 0:
        raise InvalidRequest(f"fps must be a number > 0, got {fps:g}")
    if fps > max_fps:
        raise InvalidRequest(f"fps {fps:g} is more than this server's limit of {max_fps:g} frames per second per "
                             "stream; send fewer frames")
    quality = setup.jpeg_quality if setup.HasField("jpeg_quality") else 85
    if not 1 <= quality <= 100:
        raise InvalidRequest(f"jpeg_quality must be between 1 and 100, got {quality}")
    if setup.output_format not in FORMATS:
        raise InvalidRequest(f"unsupported output_format value {setup.output_format}")
    return options, LiveOutput(setup.output_format, quality, fps)


def check_frame(frame: pb.DrivingFrame, what: str, max_bytes: int, max_side: int) -> None:
    """What can be checked without decoding (on every frame as it arrives, dropped or not): bytes, format, size."""
    size = len(frame.data)
    if size == 0:
        raise InvalidRequest(f"{what} is empty")
    if size > max_bytes:
        raise InvalidRequest(f"{what} is {size} bytes, more than the limit of {max_bytes} bytes per frame")
    if frame.format == pb.FRAME_I420:
        w, h = frame.width, frame.height
        if w % 2 or h % 2 or not w or not h:
            raise InvalidRequest(f"{what}: an I420 frame needs an even width and height, got {w}x{h}")
        if size != w * h * 3 // 2:
            raise InvalidRequest(f"{what}: an I420 frame of {w}x{h} has {w * h * 3 // 2} bytes, got {size}")
    elif frame.format == pb.FRAME_ENCODED:
        try:
            with Image.open(io.BytesIO(frame.data)) as image:  # reads the header only
                w, h = image.size
        except (Image.UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError):
            raise InvalidRequest(f"{what} is not an image in a supported format (JPEG, PNG, WebP, BMP), or I420 "
                                 "bytes sent without format FRAME_I420") from None
    else:
        raise InvalidRequest(f"{what}: unsupported format value {frame.format}")
    if max(w, h) > max_side:
        raise InvalidRequest(f"{what} is {w}x{h} pixels, more than the limit of {max_side} pixels per side")
    if min(w, h) < MIN_SIDE:
        raise InvalidRequest(f"{what} is {w}x{h} pixels, less than {MIN_SIDE} pixels per side")


def decode_frame(frame: pb.DrivingFrame, max_side: int) -> np.ndarray:
    """RGB uint8 (checked by ``check_frame`` first)."""
    if frame.format == pb.FRAME_I420:
        planes = np.frombuffer(frame.data, np.uint8).reshape(frame.height * 3 // 2, frame.width)
        return cv2.cvtColor(planes, cv2.COLOR_YUV2RGB_I420)
    try:
        return decode_image(frame.data, ImageLimits(max_pixels=max_side * max_side, min_side=MIN_SIDE))
    except InvalidImageError as exc:
        raise InvalidRequest(f"driving frame {frame.sequence}: {exc}") from None


@dataclass(frozen=True)
class Arrival:
    """A driving frame as it arrived (``arrived``: time.perf_counter())."""

    frame: pb.DrivingFrame
    arrived: float
    reference: bool = False


class LiveAnimator:
    """The animation of one stream. ``prepare`` once, then ``frame`` / ``reference`` one at a time."""

    def __init__(self, source_image: bytes, options: AnimateOptions, output: LiveOutput, ctx: RequestContext,
                 max_side: int = 1920):
        self.source_image = source_image
        self.options = options
        self.output = output
        self.ctx = ctx
        self.max_side = max_side
        self.need_ratios = options.keypoints.retargeting
        self.tracker = DrivingCropTracker(ctx.analyzer, TrackerConfig(crop=options.driving_crop.crop,
                                                                     box=options.driving_crop.box))
        self.smoother = MotionSmoother(output.fps, options.smoothing) if options.smoothing else None
        self.width = self.height = 512
        self.source: Source | None = None
        self.keypoints: SourceKeypoints | None = None
        self.source_outputs: dict[str, np.ndarray] | None = None
        self.stage: KeypointStage | None = None
        self.paste: PasteBack | None = None  # JPEG frames: pasted back in RGB
        self.canvas: I420Canvas | None = None  # I420 frames: pasted back in I420
        self._frame: np.ndarray | None = None  # the RGB frame buffer, reused frame after frame (frames run in turn)
        self._last_capture_us: int | None = None

    async def prepare(self) -> pb.LiveStarted:
        """Decode, face crop, source motion, the paste-back mask."""
        ctx, options = self.ctx, self.options
        source = self.source = await prepare_source(self.source_image, options, ctx)
        with ctx.timings.stage("motion"):
            outputs = await ctx.runner.infer("motion_extractor_u8", {"image_u8": source.crop_256[None]})
        self.source_outputs = outputs  # the source's raw motion (voice mode starts its motion from it)
        self.keypoints = source_keypoints(outputs)
        self.stage = KeypointStage(source, self.keypoints, options, True, ctx.runner)
        with ctx.timings.stage("keypoints"):
            await self.stage.start()
        if options.pastes_back and source.M_c2o is not None:
            with ctx.timings.stage("paste_back"):  # the mask warped into its box of the source, once
                if self.output.format == pb.FRAME_I420:
                    self.canvas = await asyncio.to_thread(I420Canvas, source.image, [source.M_c2o], feathered_mask())
                else:
                    self.paste = await asyncio.to_thread(PasteBack, source.image, source.M_c2o, feathered_mask())
            self.height, self.width = source.image.shape[:2]
        return pb.LiveStarted(
            width=self.width, height=self.height, output_format=self.output.format,
            source_face_box=[] if source.box is None else [float(v) for v in source.box],
            timings=[pb.StageTiming(stage=k, seconds=v) for k, v in ctx.timings.seconds.items()],
            weights=ctx.weights, warnings=weights_warnings(ctx.weights))

    async def frame(self, arrival: Arrival) -> pb.LiveFrame:
        """The animated frame of one driving frame (no image when it shows no face)."""
        frame = arrival.frame
        timings = Timings()
        timings.seconds["queue"] = time.perf_counter() - arrival.arrived
        found = await self._track(frame, timings)
        result = pb.LiveFrame(sequence=frame.sequence, capture_time_us=frame.capture_time_us,
                              format=self.output.format, face_found=found.face_found)
        if found.face_found:
            with timings.stage("motion"):
                motion = await self._motion(found)
            if self.smoother is not None:
                motion = self.smoother(motion, dt=self._time_step(frame.capture_time_us))
            result.image, result.width, result.height = await self.animate(motion, timings)
        result.timings.extend(pb.StageTiming(stage=k, seconds=v) for k, v in timings.seconds.items())
        return result

    async def animate(self, motion: Motion, timings: Timings) -> tuple[bytes, int, int]:
        """One frame's motion -> keypoints, render, paste-back, the output frame's (bytes, width, height)."""
        with timings.stage("keypoints"):
            kp_driving = await self.stage(motion)
        with timings.stage("render"):
            planes = await render(self.ctx.runner, self.source.crop_256, self.keypoints.x_s, kp_driving)
        return await asyncio.to_thread(self._output, planes[0], timings)

    async def reference(self, arrival: Arrival) -> pb.ReferenceSet:
        """A neutral frame: the motion is relative to it from now on (when it shows a face)."""
        frame = arrival.frame
        found = await self._track(frame, Timings())
        if found.face_found:
            composer = KeypointComposer(self.keypoints, self.options.keypoints, True)
            composer.compose(await self._motion(found))  # its first frame becomes the reference
            self.stage.composer = composer
        return pb.ReferenceSet(sequence=frame.sequence, capture_time_us=frame.capture_time_us,
                               face_found=found.face_found)

    async def _track(self, frame: pb.DrivingFrame, timings: Timings) -> DrivingFrame:
        with timings.stage("decode"):
            image = await asyncio.to_thread(decode_frame, frame, self.max_side)
        with timings.stage("detect"):
            return await self.tracker.process(image)

    async def _motion(self, found: DrivingFrame) -> Motion:
        motion = await extract_motion(self.ctx.runner, [found.image_256])
        if not self.need_ratios:
            return motion
        return Motion(motion.scale, motion.R, motion.exp, motion.t, np.array([found.eye_ratio], F32),
                      np.array([found.lip_ratio], F32))

    def _time_step(self, capture_us: int) -> float:
        """Seconds since the previous smoothed frame by the capture times (frames dropped on the way make it longer);
        the nominal 1 / fps when the times are missing or implausible."""
        last, self._last_capture_us = self._last_capture_us, capture_us
        step = (capture_us - last) / 1e6 if last is not None and capture_us else 0.0
        return step if 0.001 <= step <= 1.0 else 1.0 / self.output.fps

    def _output(self, planes: np.ndarray, timings: Timings) -> tuple[bytes, int, int]:
        """The rendered 512x512 crop (I420) -> the output frame's bytes, pasted back when the stream pastes back
        (in a worker thread)."""
        if self.output.format == pb.FRAME_I420:
            if self.canvas is None:
                return planes.tobytes(), 512, 512
            with timings.stage("paste_back"):
                frame = self.canvas([planes[None]])[0]
            with timings.stage("encode"):
                return frame.tobytes(), self.width, self.height
        with timings.stage("paste_back"):
            rgb = cv2.cvtColor(planes, cv2.COLOR_YUV2RGB_I420)
            if self.paste is not None:
                rgb = self._frame = self.paste(rgb, self._frame)
        with timings.stage("encode"):
            data = encode_image(rgb, "jpeg", self.output.jpeg_quality)
        return data, rgb.shape[1], rgb.shape[0]
