"""Speech as a source of driving motion: 16 kHz audio -> Ditto's audio-to-motion through Triton (``audio_encoder``,
``lmdm``) -> per-frame motion at 25 fps, fed to the same keypoint, render and paste-back stages as a driving video.

Entry points (the API side decodes and resamples the audio, parses the options and muxes the MP4):

* ``async def audio_motion(ctx: RequestContext, audio_16k: np.ndarray, source: AudioSource,
  options: AudioMotionOptions) -> AudioMotion``: float32 mono samples at 16 kHz -> ``AudioMotion`` with
  ``x_d`` (N, 21, 3) driving keypoints before the stitching MLP (Ditto's ``motion_stitch``), ``motion``
  (``keypoints.Motion``, N frames: what a driving video's motion extractor would have given, for the keypoint stage
  and for motion templates), ``generated`` (N, 265) and its ``reference`` frame. N = ceil(seconds x 25).
* ``AudioDriving``: a ``driving.DrivingSource`` over the same computation, for ``ImageAnimation`` (which hands it
  the source's motion-extractor outputs through ``bind_source`` before asking for chunks).
* ``AudioSource.from_extractor(outputs)``: the source's raw motion from the ``motion_extractor_u8`` outputs (the
  ``*_bins`` pose logits included).

The generated motion is mixed onto the source (angles as logits); as a ``Motion`` its frame 0 is the source's own
pose and expression, so relative and absolute keypoint modes agree and the expression-friendly multiplier is 1.

Where the DDIM loop runs: here, in the orchestrator, one ``lmdm`` call per step (the unconditional and conditional
passes in one request); Triton's dynamic batcher groups the steps of concurrent requests. The numpy math runs in a
worker thread (``orchestrator/audio``, the same code the golden tests check in process) whose encoder and denoiser
callables hand each call to the event loop's Triton client and wait for it; a cancelled request cancels the call in
flight and stops the thread at its next call.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import AsyncIterator, Sequence

import numpy as np

from ..audio.conditions import SourceConditions, emotion_vector, frame_conditions
from ..audio.drivers import OFFLINE, MotionGenerator, offline_motion
from ..audio.features import FPS, SAMPLE_RATE, offline_features
from ..audio.motion import POSE_DIMS
from ..audio.sampler import DdimSampler, Noise, ddim_schedule
from ..audio.stitch import SourceMotion, bins_to_degrees, mix, transform
from ..errors import FailedPrecondition, InvalidRequest
from ..keypoints import NUM_KP, Motion, rotation_matrix
from .context import RequestContext

F32 = np.float32
AUDIO_ENCODER, LMDM = "audio_encoder", "lmdm"
SEQ_FRAMES, MOTION_DIM = 80, 265
MAX_STEPS = 200
# Eye conditions where the source's are not measured: both eyes open, irises centred. The eye openness is measured
# on the source's FaceMesh (``face.ratios.eye_openness``, the default face stack); the iris offsets need MediaPipe's
# iris points (478), which the served mesh lacks, so they stay centred unless the request sets them.
DEFAULT_EYE_OPEN = (0.9, 0.9)
DEFAULT_EYE_BALL = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


@dataclass(frozen=True)
class AudioMotionOptions:
    """How speech drives the portrait.

    emotion: Ditto's classes (names of ``conditions.EMOTIONS`` or 0-7), one or several; steps: DDIM sampling steps
    (50 as Ditto offline, fewer is faster and coarser); guidance: classifier-free guidance weight (2 as Ditto);
    seed: the sampler's noise (same seed, same motion); eye_open (2,) / eye_ball (6,): the eye conditions (eye
    openness and iris offset the motion is generated for; None: the source's, or open and centred); head_motion:
    the share of the generated head pose (angles and translation) applied, 0 keeps the source's pose, 1 is Ditto's.
    """

    emotion: int | str | Sequence[int | str] = "neutral"
    steps: int = OFFLINE.steps
    guidance: float = 2.0
    seed: int = 0
    eye_open: Sequence[float] | None = None
    eye_ball: Sequence[float] | None = None
    head_motion: float = 1.0

    def validated(self) -> "AudioMotionOptions":
        """Itself, or ``InvalidRequest`` naming the first bad value."""
        try:
            emotion_vector(self.emotion)
        except ValueError as exc:
            raise InvalidRequest(f"audio emotion: {exc}") from None
        if not (isinstance(self.steps, (int, np.integer)) and 1 <= self.steps <= MAX_STEPS):
            raise InvalidRequest(f"audio sampling steps must be 1 to {MAX_STEPS} (got {self.steps!r:.40})")
        if not (np.isfinite(self.guidance) and 0.0 <= self.guidance <= 10.0):
            raise InvalidRequest(f"audio guidance weight must be 0 to 10 (got {self.guidance!r:.40})")
        if not (isinstance(self.seed, (int, np.integer)) and 0 <= self.seed < 2**63):
            raise InvalidRequest("audio seed must be an integer from 0 to 2^63 - 1")
        if not (np.isfinite(self.head_motion) and 0.0 <= self.head_motion <= 2.0):
            raise InvalidRequest(f"audio head motion share must be 0 to 2 (got {self.head_motion!r:.40})")
        for name, value, size, bound in (("eye_open", self.eye_open, 2, 2.0), ("eye_ball", self.eye_ball, 6, 1.0)):
            if value is None:
                continue
            array = np.asarray(value, np.float64)
            if array.shape != (size,) or not np.all(np.isfinite(array)) or np.abs(array).max() > bound:
                raise InvalidRequest(f"audio {name} takes {size} values within +-{bound:g}")
        return self


@dataclass(frozen=True)
class AudioSource:
    """What the source portrait gives the audio motion: its raw motion and its eye conditions."""

    motion: SourceMotion
    eye_open: np.ndarray  # (2,)
    eye_ball: np.ndarray  # (6,)

    @classmethod
    def from_extractor(cls, outputs: dict[str, np.ndarray], face: int = 0, eye_open: Sequence[float] | None = None,
                       eye_ball: Sequence[float] | None = None) -> "AudioSource":
        """From the ``motion_extractor(_u8)`` outputs of a batch of crops (``face``: which one)."""
        missing = [f"{a}_bins" for a in ("pitch", "yaw", "roll") if f"{a}_bins" not in outputs]
        if missing:
            raise FailedPrecondition(f"the served motion extractor lacks {', '.join(missing)}: re-export the model "
                                 f"repository (liveportrait-export --audio) to animate from audio")
        raw = {name: outputs[name][face:face + 1] for name in ("scale", "t", "exp", "kp")}
        raw.update({a: outputs[f"{a}_bins"][face:face + 1] for a in ("pitch", "yaw", "roll")})
        return cls(SourceMotion.from_raw(raw), np.asarray(eye_open or DEFAULT_EYE_OPEN, F32),
                   np.asarray(eye_ball or DEFAULT_EYE_BALL, F32))

    def conditions(self, options: AudioMotionOptions) -> SourceConditions:
        eye_open = self.eye_open if options.eye_open is None else np.asarray(options.eye_open, F32)
        eye_ball = self.eye_ball if options.eye_ball is None else np.asarray(options.eye_ball, F32)
        return SourceConditions(eye_open, eye_ball, self.motion.fields["kp"].reshape(-1))


@dataclass(frozen=True)
class AudioMotion:
    x_d: np.ndarray  # (N, 21, 3) driving keypoints before the stitching MLP
    motion: Motion  # (N frames) the mixed motion as a driving video's
    generated: np.ndarray  # (N, 265) the generator's raw motion
    reference: np.ndarray  # (265,) the frame the motion is relative to (d0)

    def __len__(self) -> int:
        return len(self.x_d)


class ServedAudioNetworks:
    """The encoder and denoiser callables of ``orchestrator/audio`` over Triton, for a worker thread: each call is
    run on ``loop`` by the request's runner and waited for; ``cancel()`` cancels the call in flight and makes every
    later call raise ``CancelledError``."""

    def __init__(self, ctx: RequestContext, loop: asyncio.AbstractEventLoop):
        self.ctx = ctx
        self.loop = loop
        self.cancelled = threading.Event()
        self.calls = {AUDIO_ENCODER: 0, LMDM: 0}

    def cancel(self) -> None:
        self.cancelled.set()

    def _infer(self, model: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.cancelled.is_set():
            raise asyncio.CancelledError()
        future = asyncio.run_coroutine_threadsafe(self.ctx.runner.infer(model, inputs), self.loop)
        while True:
            try:
                result = future.result(timeout=0.05)
                self.calls[model] += 1
                return result
            except concurrent.futures.TimeoutError:
                if self.cancelled.is_set():
                    future.cancel()
                    raise asyncio.CancelledError() from None

    def encode(self, windows: np.ndarray) -> np.ndarray:
        return self._infer(AUDIO_ENCODER, {"audio": np.ascontiguousarray(windows, F32)})["encoding"]

    def denoise(self, x: np.ndarray, kp_cond: np.ndarray, cond: np.ndarray,
                t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = len(x)
        out = self._infer(LMDM, {"x_t": np.ascontiguousarray(x, F32), "kp_cond": np.ascontiguousarray(kp_cond, F32),
                                 "cond": np.ascontiguousarray(cond, F32),
                                 "t": np.asarray(t, F32).reshape(n, 1)})
        return out["x0_uncond"], out["x0_cond"]


def generate(encode, denoise, audio_16k: np.ndarray, source: AudioSource,
             options: AudioMotionOptions) -> AudioMotion:
    """The whole clip's motion with any encoder and denoiser callables (served, or in process): synchronous."""
    features = offline_features(encode, audio_16k)
    conditions = frame_conditions(features, source.conditions(options), emotion_vector(options.emotion))
    noise = Noise.seeded(int(options.seed), options.steps, (SEQ_FRAMES, MOTION_DIM))
    sampler = DdimSampler(denoise, ddim_schedule(options.steps), noise, options.guidance)
    generator = MotionGenerator(sampler, replace(OFFLINE, steps=options.steps), source.motion.vector())
    generated = offline_motion(generator, conditions)
    return mixed_motion(source, generated, generated[0].copy(), options.head_motion)


def mixed_motion(source: AudioSource, generated: np.ndarray, reference: np.ndarray,
                 head_motion: float = 1.0) -> AudioMotion:
    """Generated motion -> keypoints and ``Motion``; ``head_motion`` scales the pose's change from the reference."""
    generated = np.asarray(generated, F32).reshape(-1, MOTION_DIM)
    if head_motion != 1.0:
        generated = generated.copy()
        generated[:, 1:POSE_DIMS] = reference[1:POSE_DIMS] + F32(head_motion) * (generated[:, 1:POSE_DIMS]
                                                                                 - reference[1:POSE_DIMS])
        generated[:, POSE_DIMS:POSE_DIMS + 3] = (reference[POSE_DIMS:POSE_DIMS + 3] + F32(head_motion)
                                                 * (generated[:, POSE_DIMS:POSE_DIMS + 3]
                                                    - reference[POSE_DIMS:POSE_DIMS + 3]))
    fields = mix(source.motion, generated, reference)
    R = rotation_matrix(*(bins_to_degrees(fields[a]) for a in ("pitch", "yaw", "roll")))
    n = len(generated)
    motion = Motion(fields["scale"].reshape(-1).astype(F32), R.astype(F32),
                    fields["exp"].reshape(n, NUM_KP, 3).astype(F32), fields["t"].reshape(n, 3).astype(F32))
    return AudioMotion(transform(fields), motion, generated, np.asarray(reference, F32))


async def audio_motion(ctx: RequestContext, audio_16k: np.ndarray, source: AudioSource,
                       options: AudioMotionOptions) -> AudioMotion:
    """16 kHz float32 mono speech -> motion at 25 fps through Triton (see the module docstring)."""
    audio = np.asarray(audio_16k, F32).reshape(-1)
    if len(audio) == 0:
        raise InvalidRequest("the driving audio has no samples")
    if not np.all(np.isfinite(audio)):
        raise InvalidRequest("the driving audio has samples that are not finite numbers")
    options = options.validated()
    networks = ServedAudioNetworks(ctx, asyncio.get_running_loop())
    with ctx.timings.stage("audio_motion"):
        work = asyncio.ensure_future(asyncio.to_thread(generate, networks.encode, networks.denoise, audio, source,
                                                       options))
        try:
            return await asyncio.shield(work)
        except asyncio.CancelledError:
            networks.cancel()
            await asyncio.gather(work, return_exceptions=True)  # the thread stops at its next call
            raise


class AudioDriving:
    """A ``DrivingSource`` of speech: the motion of the whole clip (one ``audio_motion``), then chunks of it.

    ``bind_source`` takes the source's motion-extractor outputs and its measured eye openness (``ImageAnimation.prepare``
    calls it); the request's eye conditions, when set, replace the source's.
    """

    is_video = True
    fps = Fraction(FPS)

    def __init__(self, ctx: RequestContext, audio_16k: np.ndarray, options: AudioMotionOptions,
                 audio_path: Path | None = None, chunk: int = 8):
        self.ctx = ctx
        self.audio = np.asarray(audio_16k, F32).reshape(-1)
        self.options = options.validated()
        self.audio_path = audio_path
        self.chunk = chunk
        self.source: AudioSource | None = None
        self.result: AudioMotion | None = None

    @property
    def total_frames(self) -> int:
        return int(np.ceil(len(self.audio) / SAMPLE_RATE * FPS))

    def bind_source(self, outputs: dict[str, np.ndarray], face: int = 0,
                    eye_open: Sequence[float] | None = None) -> None:
        self.source = AudioSource.from_extractor(outputs, face, eye_open)

    async def chunks(self) -> AsyncIterator[Motion]:
        if self.source is None:
            raise RuntimeError("AudioDriving needs the source's motion (bind_source) before its chunks")
        self.result = await audio_motion(self.ctx, self.audio, self.source, self.options)
        motion = self.result.motion
        for start in range(0, len(motion), self.chunk):
            yield motion[start:start + self.chunk]
