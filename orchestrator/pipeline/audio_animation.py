"""AnimatePortrait driven by a voice: the request's decoded audio and ``driving_audio.options`` -> the audio stage
(``audio_driving.AudioDriving``: Ditto's audio-to-motion through Triton) -> the still portrait's animation
(``ImageAnimation``: keypoints, render, paste-back), at 25 fps, ceil(seconds x 25) frames, the upload's audio muxed.

``eye_blinks: false`` is Ditto's ``drive_eye=False``: the eye keypoints keep the source's expression (no blinks, no
gaze correction), everything else as generated.
"""
from __future__ import annotations

from dataclasses import replace
from typing import AsyncIterator

import numpy as np

from ..audio_input import DrivingAudio
from ..errors import FailedPrecondition
from ..keypoints import EYE_KEYPOINTS, NUM_KP, Motion
from ..model_names import AUDIO_MODELS
from ..options import AnimateOptions, AudioRequestOptions
from ..triton_client import RequestRunner, TritonError
from .audio_driving import AudioDriving, AudioMotionOptions
from .context import RequestContext
from .image_source import ImageAnimation
from .source import prepare_sources

NO_AUDIO_MODELS = ("this server does not serve the audio-to-motion models (Triton has no {model!r}): export the "
                   "model repository with `liveportrait-export --audio` (or `liveportrait up --audio`)")


class AudioModelsRunner(RequestRunner):
    """The request's runner, with an audio model Triton does not know reported as FAILED_PRECONDITION naming the
    export flag (a repository exported without ``--audio``)."""

    def __init__(self, base: RequestRunner):
        super().__init__(base.runner, base.traffic, base.deadline)

    async def infer(self, model: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            return await super().infer(model, inputs)
        except TritonError as exc:
            text = str(exc).lower()
            if model in AUDIO_MODELS and ("unknown model" in text or "not found" in text):
                raise FailedPrecondition(NO_AUDIO_MODELS.format(model=model)) from None
            raise


def motion_options(options: AudioRequestOptions) -> AudioMotionOptions:
    return AudioMotionOptions(emotion=options.emotion, steps=options.sampling_steps, guidance=options.guidance,
                              seed=options.seed, eye_open=options.eye_open, eye_ball=options.eye_ball,
                              head_motion=options.head_motion).validated()


class SourceEyesAudioDriving(AudioDriving):
    """Speech-driven motion with the source's eyes (``eye_blinks: false``)."""

    async def chunks(self) -> AsyncIterator[Motion]:
        async for motion in super().chunks():  # the source is bound before the first chunk
            yield with_source_eyes(motion, self.source.motion.fields["exp"].reshape(NUM_KP, 3))


def with_source_eyes(motion: Motion, source_exp: np.ndarray) -> Motion:
    """``motion`` with the eye keypoints' expression set to the source's (21, 3) expression."""
    exp = motion.exp.copy()
    exp[:, list(EYE_KEYPOINTS)] = source_exp[list(EYE_KEYPOINTS)]
    return replace(motion, exp=exp)


def audio_driving(audio: DrivingAudio, audio_options: AudioRequestOptions, ctx: RequestContext,
                  chunk_frames: int) -> AudioDriving:
    """The driving source of ``audio`` (its motion once a source is bound)."""
    kind = AudioDriving if audio_options.eye_blinks else SourceEyesAudioDriving
    audio_ctx = replace(ctx, runner=AudioModelsRunner(ctx.runner))
    return kind(audio_ctx, audio.samples, motion_options(audio_options), audio.mux_path, chunk_frames)


def audio_animation(source_image: bytes, audio: DrivingAudio, audio_options: AudioRequestOptions,
                    options: AnimateOptions, ctx: RequestContext, chunk_frames: int) -> ImageAnimation:
    """The animation of ``source_image`` driven by ``audio`` (one face; the options checked by
    ``options.audio_driving_options``)."""
    driving = audio_driving(audio, audio_options, ctx, chunk_frames)
    return ImageAnimation(source_image, driving, options, ctx, {}, 1, chunk_frames)


async def audio_template_motion(source_image: bytes, audio: DrivingAudio, audio_options: AudioRequestOptions,
                                options: AnimateOptions, ctx: RequestContext, chunk_frames: int) -> Motion:
    """ExtractMotion of a voice: the per-frame motion ``audio_animation`` drives ``source_image`` with (the source
    prepared and its motion extracted as ``ImageAnimation.prepare`` does), as a driving video's motion would be.

    The motion is absolute: the portrait's own scale and canonical keypoints, its pose and expression with the
    voice's changes mixed in (frame 0 is the portrait's own). The keypoint stage of AnimatePortrait treats a template
    and the voice alike (one motion per frame, frame 0 the reference), so the same portrait and options give the
    same frames; ``options.edit``, smoothing and the keypoint options apply at animation time, not here."""
    sources, _ = await prepare_sources(source_image, options, ctx, 1)
    with ctx.timings.stage("motion"):
        outputs = await ctx.runner.infer("motion_extractor_u8", {"image_u8": sources[0].crop_256[None]})
    driving = audio_driving(audio, audio_options, ctx, chunk_frames)
    driving.bind_source(outputs, 0, sources[0].eye_open)
    return Motion.concat([motion async for motion in driving.chunks()])
