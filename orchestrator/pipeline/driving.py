"""Driving motion as a stream of chunks: from a video (decoded, cropped and motion-extracted chunk by chunk), a single
image, or a motion template. Every source yields ``keypoints.Motion`` chunks of at most ``chunk`` frames."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import AsyncIterator, Protocol

import numpy as np

from ..errors import InvalidRequest, NoFace
from ..face import FaceAnalyzer
from ..face.tracking import DrivingCropTracker, DrivingFrame, TrackerConfig
from ..keypoints import Motion, motion_from_extractor
from ..media import DEFAULT_FPS, InvalidVideoError, VideoInfo, read_frames
from ..options import DrivingCropOptions
from ..templates import Template
from ..timing import Timings
from ..triton_client import RequestRunner
from .motion_cache import MotionCache, fingerprint, motion_copy, motion_nbytes

MOTION_MODEL = "motion_extractor_u8"


class DrivingSource(Protocol):
    fps: Fraction
    total_frames: int  # expected output frames (0 when unknown)
    is_video: bool  # more than one frame: the official flag_is_driving_video
    audio_path: Path | None

    def chunks(self) -> AsyncIterator[Motion]: ...


async def extract_motion(runner: RequestRunner, images: list[np.ndarray]) -> Motion:
    """Motion of 256x256 RGB uint8 images, one Triton call per chunk."""
    outputs = await runner.infer(MOTION_MODEL, {"image_u8": np.stack(images)})
    return motion_from_extractor(outputs)


@dataclass
class TemplateDriving:
    template: Template
    chunk: int = 8
    audio_path: Path | None = None

    @property
    def fps(self) -> Fraction:
        return self.template.fps

    @property
    def total_frames(self) -> int:
        return len(self.template.motion)

    @property
    def is_video(self) -> bool:
        return self.total_frames > 1

    async def chunks(self) -> AsyncIterator[Motion]:
        motion = self.template.motion
        for start in range(0, len(motion), self.chunk):
            yield motion[start:start + self.chunk]


@dataclass
class _Ratios:
    """Driving eye/lip ratios, carried forward over frames where the face is lost."""

    eyes: tuple[float, float] | None = None
    lip: float | None = None

    def update(self, frame: DrivingFrame) -> tuple[tuple[float, float] | None, float | None]:
        if frame.eye_ratio is not None:
            self.eyes, self.lip = frame.eye_ratio, frame.lip_ratio
        return self.eyes, self.lip


class VideoDriving:
    """A spooled driving video (or one image) -> motion chunks; crops with the streaming face tracker when needed.

    Frames before the first face (when cropping) wait, at most ``max_pending``, and are cropped with the first
    face's box, so the output keeps one frame per driving frame. Without cropping (a square video, or
    ``crop_driving_video`` off) the first frame must show a face, as in the official pipeline
    (``Cropper.calc_lmks_from_cropped_video`` raises "No face detected in the frame #0"); later frames are not
    checked.

    With a ``cache`` (``motion_cache.MotionCache``), a video whose motion is cached (same bytes, same
    ``motion_settings``; ``models`` names the model set and weights) is neither decoded nor tracked nor run through
    the motion extractor, and the motion of a video read to its end is stored.
    """

    what = "driving video"

    def __init__(self, path: Path, info: VideoInfo, runner: RequestRunner, analyzer: FaceAnalyzer,
                 crop: DrivingCropOptions, need_ratios: bool, timings: Timings, chunk: int = 8,
                 max_frames: int = 18_000, max_pending: int = 300, audio: bool = True,
                 cache: MotionCache | None = None, models: str = ""):
        self.path = path
        self.info = info
        self.runner = runner
        self.tracker = DrivingCropTracker(analyzer, TrackerConfig(crop=crop.crop, box=crop.box),
                                          (info.height, info.width))
        self.need_ratios = need_ratios
        self.timings = timings
        self.chunk = chunk
        self.max_frames = max_frames
        self.max_pending = max_pending
        self.audio_path = path if audio and info.has_audio else None
        self.fps = info.fps
        self.total_frames = info.frames
        self.is_video = True
        self._ratios = _Ratios()
        self._pending: list[np.ndarray] = []
        self._first = True
        self.cache = cache if cache is not None and cache.enabled else None
        self.models = models

    @property
    def motion_settings(self) -> tuple[str, ...]:
        """What the motion depends on besides the video's bytes: the driving crop and tracker settings, the face
        stack and its settings (less the source crop, which the driving side never reads), whether eye/lip ratios are
        measured, and the models. Smoothing and the keypoint options apply after the driving motion, per request."""
        analyzer = self.tracker.analyzer
        return (repr(self.tracker.config), type(analyzer).__name__, repr(replace(analyzer.config, crop=None)),
                f"ratios={self.need_ratios}", self.models)

    async def chunks(self) -> AsyncIterator[Motion]:
        if self.cache is None:
            async for motion in self._extracted():
                yield motion
            return
        with self.timings.stage("decode"):  # reading the spooled bytes once more: their fingerprint
            video = await asyncio.to_thread(fingerprint, self.path)
        settings = self.motion_settings
        cached = self.cache.get(video, settings)
        if cached is not None:
            if len(cached) > self.max_frames:
                raise InvalidVideoError(f"the {self.what} has more than {self.max_frames} frames (the limit)")
            for start in range(0, len(cached), self.chunk):
                yield cached[start:start + self.chunk]
            return
        parts: list[Motion] | None = []
        size = 0
        async for motion in self._extracted():
            if parts is not None:  # collected while it could still be stored
                size += motion_nbytes(motion)
                if self.cache.fits(size):
                    parts.append(motion_copy(motion))
                else:
                    parts = None
            yield motion
        if parts:
            self.cache.put(video, settings, Motion.concat(parts))

    async def _extracted(self) -> AsyncIterator[Motion]:
        """The motion of the video: decoded, tracked and run through the motion extractor chunk by chunk."""
        frames = read_frames(self.path, self.chunk, self.max_frames)
        ready: list[tuple[np.ndarray, tuple | None, float | None]] = []
        while True:
            with self.timings.stage("decode"):
                batch = await asyncio.to_thread(next, frames, None)
            if batch is None:
                break
            with self.timings.stage("detect"):
                for frame in batch:
                    ready.extend(await self.prepare(frame))
            while len(ready) >= self.chunk:
                yield await self._motion(ready[:self.chunk])
                ready = ready[self.chunk:]
        if self._pending:
            raise NoFace(f"no face was found in the driving video ({len(self._pending)} frames); use a video "
                         "showing a face, or set `crop_driving_video: off` (CLI: `--crop-driving-video off`) for a "
                         "video that is already a face crop")
        if ready:
            yield await self._motion(ready)

    async def prepare(self, frame: np.ndarray) -> list[tuple[np.ndarray, tuple | None, float | None]]:
        """The frame's network input and ratios (and those of frames that waited for the first face)."""
        first, self._first = self._first, False
        if not self.tracker.cropping and not self.need_ratios and not first:
            return [(self.tracker.driving_input(frame), None, None)]
        found = await self.tracker.process(frame)
        if not self.tracker.cropping:
            if first and not found.face_found:
                raise NoFace(self._no_face_uncropped())
            if not self.need_ratios:
                return [(found.image_256, None, None)]
        eyes, lip = self._ratios.update(found)
        if found.image_256 is None:
            self._pending.append(frame)
            if len(self._pending) > self.max_pending:
                raise NoFace(f"no face was found in the first {self.max_pending} frames of the driving video")
            return []
        waited = [(self.tracker.driving_input(f, found.box), eyes, lip) for f in self._pending]
        self._pending = []
        return waited + [(found.image_256, eyes, lip)]

    def _no_face_uncropped(self) -> str:
        return (f"no face was found in the first frame of the {self.what}; it is used uncropped (square, or "
                "`crop_driving_video: off`), and like the official pipeline the service needs a face in its first "
                f"frame: use a {self.what} that shows a face from the start")

    async def _motion(self, items: list[tuple[np.ndarray, tuple | None, float | None]]) -> Motion:
        with self.timings.stage("motion"):
            motion = await extract_motion(self.runner, [image for image, _, _ in items])
        if not self.need_ratios:
            return motion
        default_eyes, default_lip = (0.0, 0.0), 0.0
        eyes = np.array([e if e is not None else default_eyes for _, e, _ in items], np.float32)
        lips = np.array([v if v is not None else default_lip for _, _, v in items], np.float32)
        return Motion(motion.scale, motion.R, motion.exp, motion.t, eyes, lips)


class ImageDriving(VideoDriving):
    """One driving image: one output frame at the official default 25 fps. ``what`` names it in messages (a face's
    own driving image: ``face_drivings[i].driving_image``)."""

    def __init__(self, image: np.ndarray, runner: RequestRunner, analyzer: FaceAnalyzer, crop: DrivingCropOptions,
                 need_ratios: bool, timings: Timings, what: str = "driving image"):
        h, w = image.shape[:2]
        super().__init__(Path(), VideoInfo(w, h, DEFAULT_FPS, 1, False), runner, analyzer, crop, need_ratios,
                         timings, chunk=1, audio=False)
        self.image = image
        self.is_video = False
        self.what = what

    async def chunks(self) -> AsyncIterator[Motion]:
        with self.timings.stage("detect"):
            ready = await self.prepare(self.image)
        if not ready:
            raise NoFace(f"no face was found in the {self.what}; use an image showing a face")
        yield await self._motion(ready)


def require_ratios(motion: Motion, eyes: bool, lip: bool) -> None:
    if eyes and motion.eye_ratio is None:
        raise InvalidRequest("eye_retargeting needs driving eye ratios, which this motion template does not have")
    if lip and motion.lip_ratio is None:
        raise InvalidRequest("lip_retargeting needs driving lip ratios, which this motion template does not have")


@dataclass(frozen=True)
class EditedMotion(Motion):
    """Motion chunk with one edit per frame (``KeypointStage`` applies them on top of the frames' keypoints)."""

    edits: tuple = ()


def neutral_motion(n: int) -> Motion:
    """N frames that, driving in relative mode, reproduce the source exactly (identity rotation, no expression)."""
    return Motion(np.ones(n, np.float32), np.broadcast_to(np.eye(3, dtype=np.float32), (n, 3, 3)).copy(),
                  np.zeros((n, 21, 3), np.float32), np.zeros((n, 3), np.float32))


@dataclass
class KeyframeDriving:
    """No driving video: the source's own motion with edits interpolated between keyframes (``edit.keyframe_edits``),
    in chunks like the other driving inputs."""

    keyframes: list  # edit.Keyframe
    fps: Fraction
    chunk: int = 8
    max_frames: int = 18_000
    audio_path: Path | None = None
    is_video: bool = True

    def __post_init__(self):
        from ..edit import InvalidEditError, keyframe_edits

        try:
            self.edits = keyframe_edits(self.keyframes, float(self.fps), self.max_frames)
        except InvalidEditError as exc:
            raise InvalidRequest(str(exc)) from None

    @property
    def total_frames(self) -> int:
        return len(self.edits)

    async def chunks(self) -> AsyncIterator[Motion]:
        from ..edit import deltas

        for start in range(0, len(self.edits), self.chunk):
            part = [deltas(e) for e in self.edits[start:start + self.chunk]]
            yield EditedMotion(*vars(neutral_motion(len(part))).values(), edits=tuple(part))
