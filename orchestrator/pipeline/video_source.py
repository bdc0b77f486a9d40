"""Video-to-video: a source video re-acted by a driving input (official ``LivePortraitPipeline.execute`` with a source
video), streamed chunk by chunk in bounded memory.

source video (spooled) -> frames in chunks -> the face tracked and cropped per frame (``SourceFaceTracker``) ->
source motion per frame (Triton) -> the driving motion (chunks of ``driving.DrivingSource``, paired frame by frame)
applied on top of each source frame's own motion (``keypoints.VideoSourceComposer``) -> the official Kalman smoothing
of the result, as a fixed-lag smoother (``smoothing.FixedLagKalman``: a few frames of look-ahead instead of the whole
clip) -> stitching/retargeting -> render (each frame with its own source crop) -> paste-back into its own frame.
"""
from __future__ import annotations

import asyncio
import dataclasses
from contextlib import aclosing
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import AsyncIterator

import cv2
import numpy as np

from protos.liveportrait.v1 import portrait_animator_pb2 as pb

from ..errors import NoFace
from ..face import FaceAnalyzer, limit_size
from ..face.tracking import SourceFaceTracker
from ..keypoints import (LIP_NORMALIZE_THRESHOLD, Motion, VideoSourceComposer, apply_multiplier, combined_eye_ratio,
                         combined_lip_ratio, frames_keypoints)
from ..media import VideoInfo, read_frames
from ..options import AnimateOptions
from ..read_ahead import read_ahead
from ..smoothing import FixedLagKalman, MotionSmoother
from ..timing import Timings
from .context import RequestContext
from .driving import DrivingSource, require_ratios
from .keypoint_stage import retarget, stitch
from .paste import feathered_mask
from .render import render
from .yuv_paste import paste_video_frame

F32 = np.float32
EYE_OPEN_THRESHOLD = 0.18  # official source_video_eye_retargeting_threshold
EYE_OPEN_DEFAULT = 0.39  # the official eye-open ratio used when the first frame's eyes are closed


def _take(value, index: slice):
    return None if value is None else value[index]


def _join(a, b):
    if a is None or b is None:
        return None
    if isinstance(a, list):
        return a + b
    return np.concatenate([a, b])


@dataclass(frozen=True)
class SourceFrames:
    """Consecutive source frames with their network inputs, crops and motion (arrays along the first axis)."""

    images: list  # full-resolution RGB frames (after the size limit)
    crops: np.ndarray  # (N, 256, 256, 3) uint8 network inputs
    M_c2o: np.ndarray | None  # (N, 3, 3) crop -> frame (None without cropping)
    eye_ratio: np.ndarray | None = None  # (N, 2) (None without landmarks)
    lip_ratio: np.ndarray | None = None  # (N,)
    motion: Motion | None = None  # the source frames' own motion (after ``with_motion``)
    kp: np.ndarray | None = None  # (N, 21, 3) canonical keypoints
    x_s: np.ndarray | None = None  # (N, 21, 3)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: slice) -> "SourceFrames":
        return SourceFrames(**{f.name: _take(getattr(self, f.name), index) for f in dataclasses.fields(self)})

    def __add__(self, other: "SourceFrames") -> "SourceFrames":
        motion = None if self.motion is None else Motion.concat([self.motion, other.motion])
        values = {f.name: _join(getattr(self, f.name), getattr(other, f.name)) for f in dataclasses.fields(self)
                  if f.name != "motion"}
        return SourceFrames(**values, motion=motion)


class SourceVideo:
    """The spooled source video -> ``SourceFrames`` chunks: every frame decoded, limited in size like a source image,
    its face tracked and cropped. Frames before the first face wait (at most ``max_pending``, full-size frames held in
    memory) and take the first face's crop, so the output keeps one frame per source frame."""

    what = "source video"

    def __init__(self, path: Path, info: VideoInfo, analyzer: FaceAnalyzer, options: AnimateOptions,
                 timings: Timings, chunk: int = 8, max_frames: int = 18_000, max_pending: int = 64):
        self.path, self.info, self.options, self.timings = path, info, options, timings
        self.chunk, self.max_frames, self.max_pending = chunk, max_frames, max_pending
        self.tracker = SourceFaceTracker(analyzer, options.face_index, options.face_order, options.face_hint,
                                         every_face=options.needs_every_face)
        self.decoded = 0  # frames decoded so far

    @property
    def audio_path(self) -> Path | None:
        return self.path if self.info.has_audio else None

    def frame_size(self) -> tuple[int, int]:
        """(height, width) of the output frames: the first frame's, upright (a phone video's display rotation turns
        its coded size) and after the size limit."""
        frames = read_frames(self.path, 1, 1, self.what)
        try:
            first = next(frames)[0]
        finally:
            frames.close()
        return limit_size(first, self.options.source_max_dim, self.options.source_division).shape[:2]

    async def chunks(self) -> AsyncIterator[SourceFrames]:
        o = self.options
        pending: list[np.ndarray] = []
        ready: SourceFrames | None = None
        with_faces = o.crop_source
        batches = read_frames(self.path, self.chunk, self.max_frames, self.what)
        try:
            while True:
                with self.timings.stage("decode"):
                    batch = await asyncio.to_thread(next, batches, None)
                    if batch is None:
                        break
                    batch = [limit_size(f, o.source_max_dim, o.source_division) for f in batch]
                self.decoded += len(batch)
                with self.timings.stage("detect"):
                    part = await (self._cropped(batch, pending) if with_faces else self._whole(batch))
                if part is not None:
                    ready = part if ready is None else ready + part
                while ready is not None and len(ready) >= self.chunk:
                    yield ready[:self.chunk]
                    ready = ready[self.chunk:] if len(ready) > self.chunk else None
        finally:
            batches.close()
        if pending:
            raise NoFace(f"no face was found in the source video ({len(pending)} frames); use a video showing a "
                         "face, give `face_hint` [x1, y1, x2, y2] around it, or set `crop_source: false` (CLI: "
                         "`--no-crop-source`) for a video that is already a face crop")
        if ready is not None and len(ready):
            yield ready

    async def _whole(self, batch: list[np.ndarray]) -> SourceFrames:
        """Official ``flag_do_crop`` off: every frame resized to 256 is the network input; no paste-back."""
        return SourceFrames(batch, np.stack([cv2.resize(f, (256, 256)) for f in batch]), None)

    async def _cropped(self, batch: list[np.ndarray], pending: list[np.ndarray]) -> SourceFrames | None:
        images, crops, matrices, eyes, lips = [], [], [], [], []
        for frame in batch:
            found = await self.tracker.process(frame)
            if found is None:
                pending.append(frame)
                if len(pending) > self.max_pending:
                    raise NoFace(f"no face was found in the first {self.max_pending} frames of the source video (frames "
                                 "before the first face wait for it in memory); cut the video to start with the "
                                 "face, or give `face_hint` [x1, y1, x2, y2] around it")
                continue
            for image in pending + [frame]:  # frames that waited take the first face's crop
                crop = found.image_256 if image is frame else self.tracker.crop_like(image, found)
                images.append(image)
                crops.append(crop)
                matrices.append(found.transform.M_c2o)
                eyes.append(found.eye_ratio)
                lips.append(found.lip_ratio)
            pending.clear()
        if not images:
            return None
        return SourceFrames(images, np.stack(crops), np.stack(matrices).astype(F32), np.array(eyes, F32),
                            np.array(lips, F32))


async def paired(source: SourceVideo, driving: DrivingSource) -> AsyncIterator[tuple[SourceFrames, Motion]]:
    """Source chunks with the driving motion of the same frames, until either ends (official: the shorter of the
    two); a driving image (or a one-frame template) drives every source frame."""
    async with aclosing(source.chunks()) as frames, aclosing(driving.chunks()) as motions:
        buffered: Motion | None = None
        still: Motion | None = None
        async for part in frames:
            if not driving.is_video:
                if still is None:
                    still = (await anext(motions))[0:1]
                yield part, still[np.zeros(len(part), np.intp)]
                continue
            while buffered is None or len(buffered) < len(part):
                more = await anext(motions, None)
                if more is None:
                    break
                buffered = more if buffered is None or not len(buffered) else Motion.concat([buffered, more])
            if buffered is None or len(buffered) == 0:
                return
            n = min(len(part), len(buffered))
            yield part[:n], buffered[:n]
            buffered = buffered[n:]
            if n < len(part):
                return


class VideoAnimation:
    """One AnimatePortrait of a source video (see ``animate.Animation``)."""

    def __init__(self, source: SourceVideo, driving: DrivingSource, options: AnimateOptions, ctx: RequestContext,
                 timing_from_driving: bool = False):
        self.source, self.driving, self.options, self.ctx = source, driving, options, ctx
        self.timing_from_driving = timing_from_driving
        self.composer = VideoSourceComposer(options.keypoints, driving.is_video)
        variance = options.source_video_smoothing
        self.smoother = FixedLagKalman(variance) if driving.is_video and variance > 0 else None
        self.pastes_back = options.pastes_back
        self.mask = feathered_mask()
        self.height = self.width = 512
        self._eyes_open: float | None = None  # source_video_eye_retargeting: frame 0's eye-open ratio
        self.crops_per_frame = 1

    @property
    def fps(self) -> Fraction:
        return self.driving.fps if self.timing_from_driving else self.source.info.fps

    @property
    def total_frames(self) -> int:
        frames = self.source.info.frames
        if self.driving.is_video and self.driving.total_frames:
            return min(frames, self.driving.total_frames) if frames else self.driving.total_frames
        return frames

    @property
    def audio_path(self) -> Path | None:
        """The audio of the video the timing comes from; of the other one when it has none (official)."""
        first, second = self.source.audio_path, self.driving.audio_path
        if self.timing_from_driving:
            first, second = second, first
        return first or second

    async def prepare(self) -> None:
        """The output size (the frames themselves are prepared one chunk at a time)."""
        if self.pastes_back:
            self.height, self.width = await asyncio.to_thread(self.source.frame_size)

    async def frames(self) -> AsyncIterator[list[np.ndarray]]:
        async for part, planes in read_ahead(self._rendered()):
            with self.ctx.timings.stage("paste_back"):
                yield await asyncio.to_thread(self._paste, part, planes)

    def summary(self) -> pb.Summary:
        """The source's decoded frames and, when cropping, the animated face as the proto promises: its detector box
        in the first frame that showed it (a source image's summary has the same fields)."""
        face, index = self.source.tracker.first_face, self.source.tracker.first_index
        if face is None:
            return pb.Summary(source_frames=self.source.decoded)
        box = [float(v) for v in face.box]
        return pb.Summary(source_frames=self.source.decoded, source_face_box=box,
                          faces=[pb.AnimatedFace(index=index, box=box, driving="main")])

    async def _rendered(self) -> AsyncIterator[tuple[SourceFrames, np.ndarray]]:
        """Paired chunks -> source motion -> the rows to smooth -> the frames the smoother releases (with a look-ahead,
        a few frames later; all of the rest at the end), rendered a chunk at a time."""
        ctx, o = self.ctx, self.options
        smoother = MotionSmoother(float(self.driving.fps), o.smoothing) if o.smoothing else None
        waiting: tuple[SourceFrames, Motion] | None = None  # frames pushed into the smoother, not yet released
        async for part, motion in paired(self.source, self.driving):
            with ctx.timings.stage("motion"):
                part = await self._with_motion(part)
            with ctx.timings.stage("keypoints"):
                if smoother is not None:
                    motion = smoother(motion)
                targets = self.composer.targets(part.motion, motion)
            if self.smoother is None:
                yield part, await self._render(part, motion, targets)
                continue
            waiting = (part, motion) if waiting is None else (waiting[0] + part, Motion.concat([waiting[1], motion]))
            done = self.smoother.push(targets)
            async for rendered in self._released(waiting, done):
                yield rendered
            waiting = (waiting[0][len(done):], waiting[1][len(done):]) if len(waiting[0]) > len(done) else None
        if waiting is not None:
            async for rendered in self._released(waiting, self.smoother.flush()):
                yield rendered

    async def _released(self, waiting: tuple[SourceFrames, Motion], targets: np.ndarray):
        """The first ``len(targets)`` waiting frames rendered with their smoothed rows, at most a chunk per call."""
        step = self.source.chunk
        for start in range(0, len(targets), step):
            window = slice(start, min(start + step, len(targets)))
            yield waiting[0][window], await self._render(waiting[0][window], waiting[1][window], targets[window])

    async def _with_motion(self, part: SourceFrames) -> SourceFrames:
        motion, kp, x_s = frames_keypoints(await self.ctx.runner.infer("motion_extractor_u8", {"image_u8": part.crops}))
        return dataclasses.replace(part, motion=motion, kp=kp, x_s=x_s)

    async def _render(self, part: SourceFrames, motion: Motion, targets: np.ndarray) -> np.ndarray:
        with self.ctx.timings.stage("keypoints"):
            x = self.composer.compose(part.kp, part.motion, motion, targets)
            x = await self._retarget_and_stitch(x, part, motion)
            x_s = part.x_s
            x = apply_multiplier(x_s, x, self.options.keypoints.driving_multiplier)
        with self.ctx.timings.stage("render"):
            return await render(self.ctx.runner, part.crops, x_s, x)

    async def _retarget_and_stitch(self, x: np.ndarray, part: SourceFrames, motion: Motion) -> np.ndarray:
        """Official 'Algorithm 1' for a source video: per frame its own ``x_s`` and landmarks' ratios."""
        o, runner, x_s = self.options.keypoints, self.ctx.runner, part.x_s
        has_landmarks = part.eye_ratio is not None
        eye, lip = o.eye_retargeting and has_landmarks, o.lip_retargeting and has_landmarks
        if eye or lip:
            require_ratios(motion, eye, lip)
            out = (x_s if o.relative_motion else x).astype(F32).copy()
            if eye:
                out += await retarget(runner, "retarget_eye", x_s, combined_eye_ratio(part.eye_ratio, motion.eye_ratio))
            if lip:
                out += await retarget(runner, "retarget_lip", x_s, combined_lip_ratio(part.lip_ratio, motion.lip_ratio))
            return await stitch(runner, x_s, out) if o.stitching else out
        if o.stitching:
            x = await stitch(runner, x_s, x)
        if has_landmarks and o.normalize_lip and o.relative_motion and not o.retargeting:
            x = x + await self._lip_normalization(part)
        if has_landmarks and self.options.source_video_eye_retargeting:
            x = x + await self._eyes_like_the_first_frame(part)
        return x

    async def _lip_normalization(self, part: SourceFrames) -> np.ndarray:
        """Official ``flag_normalize_lip`` per source frame: close the mouth of frames whose lip ratio >= 0.03."""
        delta = await retarget(self.ctx.runner, "retarget_lip", part.x_s,
                               combined_lip_ratio(part.lip_ratio, np.zeros(len(part), F32)))
        return delta * (part.lip_ratio >= LIP_NORMALIZE_THRESHOLD)[:, None, None]

    async def _eyes_like_the_first_frame(self, part: SourceFrames) -> np.ndarray:
        """Official ``flag_source_video_eye_retargeting``: every frame's eyes as open as the first frame's (0.39 when
        those are nearly closed)."""
        if self._eyes_open is None:
            first = float(np.mean(part.eye_ratio[0]))
            self._eyes_open = first if first >= EYE_OPEN_THRESHOLD else EYE_OPEN_DEFAULT
        target = np.full((len(part), 2), self._eyes_open, F32)
        return await retarget(self.ctx.runner, "retarget_eye", part.x_s, combined_eye_ratio(part.eye_ratio, target))

    def _paste(self, part: SourceFrames, planes: np.ndarray) -> list[np.ndarray]:
        """The chunk's video frames (I420): the rendered crops, or each pasted back into its own source frame."""
        if not self.pastes_back or part.M_c2o is None:
            return list(planes)
        return [paste_video_frame(image, M, self.mask, crop) for image, M, crop in zip(part.images, part.M_c2o, planes)]
