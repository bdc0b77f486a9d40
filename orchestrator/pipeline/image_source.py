"""The animation of a still portrait: the source prepared once, then every driving chunk -> keypoints -> render ->
paste-back. The next chunk is rendered while this one is pasted back (``read_ahead``, one chunk ahead).

Several faces (``options.faces``): each face has its own crop, source keypoints, keypoint stage and smoother, and
follows the main driving input or its own (``setup.face_drivings``); the faces of the same frames are rendered in
one ``render_i420`` call and pasted back into one frame in order. One face is the same path with N = 1.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import AsyncIterator

import numpy as np

from protos.liveportrait.v1 import portrait_animator_pb2 as pb

from ..errors import InvalidRequest
from ..keypoints import Motion, source_keypoints
from ..options import AnimateOptions
from ..read_ahead import read_ahead
from ..smoothing import MotionSmoother
from .context import RequestContext
from .driving import DrivingSource
from .keypoint_stage import KeypointStage
from .paste import PasteBack, feathered_mask, paste_faces
from .render import render_faces
from .yuv_paste import I420Canvas, to_rgb
from .source import Source, prepare_sources

@dataclass(frozen=True)
class FaceDriving:
    """A face's own driving input (``setup.face_drivings[i]``)."""

    label: str  # "face_drivings[i]"
    driving: DrivingSource


class AlignedMotion:
    """A face's own driving motion in the main driving's chunk sizes: its frame i drives output frame i; after its
    last frame it holds that frame, and frames beyond the output's length are never read."""

    def __init__(self, driving: DrivingSource, label: str):
        self.chunks = aiter(driving.chunks())
        self.label = label
        self.pending: Motion | None = None
        self.last: Motion | None = None  # its last frame so far
        self.ended = False

    async def take(self, n: int) -> Motion:
        parts, have = [], 0
        while have < n and not self.ended:
            if self.pending is None:
                self.pending = await anext(self.chunks, None)
                self.ended = self.pending is None
                continue
            part, rest = self.pending[:n - have], self.pending[n - have:]
            self.pending = rest if len(rest) else None
            parts.append(part)
            have += len(part)
        if parts:
            self.last = parts[-1][len(parts[-1]) - 1:]
        if self.last is None:
            raise InvalidRequest(f"{self.label} has no frames")
        if have < n:
            parts.append(self.last[np.zeros(n - have, np.intp)])
        return Motion.concat(parts)


@dataclass
class FaceAnimation:
    """One face of the animation: its source crop, keypoint stage, driving and smoother."""

    source: Source
    keypoints: KeypointStage
    label: str  # "main" or "face_drivings[i]"
    motion: AlignedMotion | None  # None: the main driving
    smoother: MotionSmoother | None  # its own driving's (the main driving is steadied once for all faces)


class ImageAnimation:
    """One AnimatePortrait of a source image (see ``animate.Animation``)."""

    def __init__(self, source_bytes: bytes, driving: DrivingSource, options: AnimateOptions, ctx: RequestContext,
                 face_drivings: dict[int, FaceDriving] | None = None, max_faces: int = 8, max_batch: int = 8):
        self.source_bytes = source_bytes
        self.driving = driving
        self.options = options
        self.ctx = ctx
        self.face_drivings = face_drivings or {}
        self.max_faces = max_faces
        self.max_batch = max_batch  # items per render_i420 call (the render models' max_batch_size)
        self.width = self.height = 512
        self.faces: list[FaceAnimation] = []
        self.canvas: I420Canvas | None = None  # the faces pasted back into the source, in I420
        self.pastes: list[PasteBack] = []  # a still image: the faces pasted back in RGB (the source's own pixels)
        self.smoother: MotionSmoother | None = None
        self.warnings: list[str] = []

    @property
    def fps(self) -> Fraction:
        return self.driving.fps

    @property
    def total_frames(self) -> int:
        return self.driving.total_frames

    @property
    def audio_path(self) -> Path | None:
        return self.driving.audio_path

    @property
    def crops_per_frame(self) -> int:
        return len(self.faces)

    async def prepare(self) -> None:
        """Decode, face crops, source motion (one call for all faces); the paste-back masks."""
        ctx, options = self.ctx, self.options
        sources, self.warnings = await prepare_sources(self.source_bytes, options, ctx, self.max_faces)
        for face in sorted(self.face_drivings):
            if face >= len(sources):
                raise InvalidRequest(f"{self.face_drivings[face].label}.face is {face}, but {len(sources)} face(s) "
                                     f"are animated (0 to {len(sources) - 1})")
        with ctx.timings.stage("motion"):
            crops = np.stack([s.crop_256 for s in sources])
            outputs = await ctx.runner.infer("motion_extractor_u8", {"image_u8": crops})
        if hasattr(self.driving, "bind_source"):  # speech (audio_driving.AudioDriving) moves the first face's motion
            self.driving.bind_source(outputs, 0, sources[0].eye_open)
        smoothing = options.smoothing
        for i, source in enumerate(sources):
            own = self.face_drivings.get(i)
            driving = own.driving if own else self.driving
            kp = source_keypoints({name: value[i:i + 1] for name, value in outputs.items()})
            self.faces.append(FaceAnimation(
                source, KeypointStage(source, kp, options, driving.is_video, ctx.runner), own.label if own else "main",
                AlignedMotion(own.driving, own.label) if own else None,
                MotionSmoother(float(self.driving.fps), smoothing) if smoothing and own else None))
        self.smoother = MotionSmoother(float(self.driving.fps), smoothing) if smoothing else None  # the main driving's
        with ctx.timings.stage("keypoints"):
            for face in self.faces:
                await face.keypoints.start()
        if options.pastes_back and sources[0].M_c2o is not None:
            if options.still:
                self.pastes = [PasteBack(sources[0].image, s.M_c2o, feathered_mask()) for s in sources]
            else:
                self.canvas = await asyncio.to_thread(I420Canvas, sources[0].image, [s.M_c2o for s in sources],
                                                      feathered_mask())
            self.height, self.width = sources[0].image.shape[:2]

    async def frames(self) -> AsyncIterator[list[np.ndarray]]:
        """The output frames (I420), chunk by chunk: the rendered crops themselves, or the faces pasted back into
        the source (buffers reused by the next chunk: ``animate`` has encoded a chunk before it asks for the next)."""
        async for planes in read_ahead(self._rendered()):
            with self.ctx.timings.stage("paste_back"):
                if self.pastes:
                    yield await asyncio.to_thread(self._pasted_rgb, planes)
                elif self.canvas is None:
                    yield list(planes[0])
                else:
                    yield await asyncio.to_thread(self.canvas, planes)

    def _pasted_rgb(self, planes: list[np.ndarray]) -> list[np.ndarray]:
        return [paste_faces(self.pastes, [to_rgb(face[i]) for face in planes]) for i in range(len(planes[0]))]

    async def _rendered(self) -> AsyncIterator[list[np.ndarray]]:
        """The rendered crops of each driving chunk, per face: each face's driving motion (steadied when the request
        asks for it: one smoother for the main driving, one per face driving, their state carried from chunk to
        chunk) -> keypoints -> render, the faces of up to ``max_batch`` items' worth of frames in one call."""
        ctx, faces = self.ctx, self.faces
        crops, x_s = [f.source.crop_256 for f in faces], [f.keypoints.kp.x_s for f in faces]
        step = max(1, self.max_batch // len(faces))  # frames per render call
        async for main in self.driving.chunks():
            if self.smoother is not None:
                with ctx.timings.stage("keypoints"):
                    main = self.smoother(main)
            kp_driving = []
            for face in faces:
                motion = main if face.motion is None else await face.motion.take(len(main))
                with ctx.timings.stage("keypoints"):
                    if face.smoother is not None:
                        motion = face.smoother(motion)
                    kp_driving.append(await face.keypoints(motion))
            parts = []
            with ctx.timings.stage("render"):
                for start in range(0, len(main), step):
                    parts.append(await render_faces(ctx.runner, crops, x_s,
                                                    [kp[start:start + step] for kp in kp_driving]))
            yield [p[0] if len(parts) == 1 else np.concatenate(p) for p in zip(*parts)]

    def summary(self) -> pb.Summary:
        faces = [f for f in self.faces if f.source.box is not None]
        if not faces:
            return pb.Summary(warnings=self.warnings)
        return pb.Summary(source_face_box=[float(v) for v in faces[0].source.box],
                          faces=[pb.AnimatedFace(index=f.source.index, box=[float(v) for v in f.source.box],
                                                 driving=f.label) for f in faces],
                          warnings=self.warnings)
