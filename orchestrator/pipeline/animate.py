"""AnimatePortrait's response stream, whatever is animated (an ``Animation``): progress events, the frames of each
chunk H.264-encoded into MP4 fragments streamed to the client, and a summary at the end. A still image (PNG, JPEG)
instead of a video when the request asks for one and animates one frame (``still``).

The animations: ``image_source.ImageAnimation`` (a still portrait) and ``video_source.VideoAnimation`` (a source
video, frame by frame). Each strings the stages together (source -> driving motion -> keypoints -> render ->
paste-back); this module only encodes and reports.
"""
from __future__ import annotations

import asyncio
import time
from fractions import Fraction
from pathlib import Path
from typing import AsyncIterator, Protocol

import numpy as np

from protos.liveportrait.v1 import portrait_animator_pb2 as pb

from ..errors import InvalidRequest
from ..media import FragmentedMp4Writer, encode_image
from ..options import AnimateOptions
from ..templates import fps_to_proto
from .context import RequestContext
from .yuv_paste import to_rgb

MIME = 'video/mp4; codecs="avc1.640028"'
STILL_MIME = {"png": "image/png", "jpeg": "image/jpeg"}


def progress(stage: int, done: int = 0, total: int = 0, message: str = "") -> pb.AnimateResponse:
    return pb.AnimateResponse(progress=pb.Progress(stage=stage, frames_done=done, frames_total=total,
                                                   message=message))


class Animation(Protocol):
    """What AnimatePortrait encodes: frames of one size, chunk by chunk."""

    width: int  # known after ``prepare``
    height: int
    fps: Fraction
    total_frames: int  # expected output frames (0 when unknown)
    audio_path: Path | None  # the video whose audio is muxed (when the request wants audio)
    crops_per_frame: int  # faces rendered per output frame (metrics and quotas count frames x faces)

    async def prepare(self) -> None: ...

    # one list per chunk: I420 ([h * 3 / 2, w] uint8) or RGB frames, valid until the next chunk is asked for; a still
    # image's (options.still) are RGB pasted back where the animation can (the source's own pixels around the face)
    def frames(self) -> AsyncIterator[list[np.ndarray]]: ...

    def summary(self) -> pb.Summary: ...  # what only this animation knows (faces, source frames)


async def animate(animation: Animation, options: AnimateOptions,
                  ctx: RequestContext) -> AsyncIterator[pb.AnimateResponse]:
    """The response stream of one AnimatePortrait call (after the inputs arrived)."""
    if options.still:
        async for response in still(animation, options, ctx):
            yield response
        return
    started = time.perf_counter()
    yield progress(pb.DECODE, 0, animation.total_frames, "decoding and analysing the source")
    await animation.prepare()
    total = animation.total_frames
    # the encoder opens in a thread while the first chunk renders
    opening = asyncio.ensure_future(asyncio.to_thread(
        FragmentedMp4Writer, animation.width, animation.height, animation.fps, options.encode_settings,
        audio_from=animation.audio_path if options.audio else None))
    writer: FragmentedMp4Writer | None = None
    offset = done = 0
    try:
        async for frames in animation.frames():
            if writer is None:
                writer = await opening
            with ctx.timings.stage("encode"):
                data = await asyncio.to_thread(writer.write, frames)
            done += len(frames)
            await ctx.frames_rendered(len(frames) * animation.crops_per_frame)
            if data:
                yield pb.AnimateResponse(video=pb.VideoChunk(data=data, offset=offset, mime_type=MIME))
                offset += len(data)
            yield progress(pb.RENDER, done, max(total, done))
        if writer is None:
            writer = await opening
        with ctx.timings.stage("encode"):
            data = await asyncio.to_thread(writer.close)
    except BaseException:
        await _abort(opening)
        raise
    yield pb.AnimateResponse(video=pb.VideoChunk(data=data, offset=offset, mime_type=MIME))
    offset += len(data)
    result = summary(done, animation.fps, animation.width, animation.height, offset, writer.has_audio, ctx,
                     time.perf_counter() - started)
    result.MergeFrom(animation.summary())
    yield pb.AnimateResponse(summary=result)


def _not_still(frames: int) -> InvalidRequest:
    animates = f"{frames} frames" if frames > 1 else "a video"
    return InvalidRequest(f"a still image output (PNG or JPEG) needs exactly one animated frame: a source image and a "
                          f"still driving input (an image, a one-frame template or keyframes of one frame); this "
                          f"request animates {animates}: ask for an MP4")


async def still(animation: Animation, options: AnimateOptions,
                ctx: RequestContext) -> AsyncIterator[pb.AnimateResponse]:
    """The response stream of a request for a still image: the one animated frame as PNG or JPEG (refused before
    any work when the request animates more than one frame)."""
    started = time.perf_counter()
    if animation.total_frames != 1:
        raise _not_still(animation.total_frames)
    yield progress(pb.DECODE, 0, 1, "decoding and analysing the source")
    await animation.prepare()
    image = None
    async for frames in animation.frames():
        if image is not None or len(frames) != 1:
            raise _not_still(len(frames) + (image is not None))
        image = frames[0] if frames[0].ndim == 3 else to_rgb(frames[0])
        await ctx.frames_rendered(animation.crops_per_frame)
        yield progress(pb.RENDER, 1, 1)
    if image is None:
        raise _not_still(0)
    with ctx.timings.stage("encode"):
        data = await asyncio.to_thread(encode_image, image, options.output_format, options.jpeg_quality)
    yield pb.AnimateResponse(video=pb.VideoChunk(data=data, offset=0, mime_type=STILL_MIME[options.output_format]))
    result = summary(1, animation.fps, image.shape[1], image.shape[0], len(data), False, ctx,
                     time.perf_counter() - started)
    result.MergeFrom(animation.summary())
    yield pb.AnimateResponse(summary=result)


async def _abort(opening: asyncio.Future) -> None:
    """Close the encoder of a failed or cancelled call, once it has opened (a thread cannot be stopped midway)."""
    try:
        writer = await asyncio.shield(opening)
    except BaseException:  # it failed to open (nothing to close), or this task is cancelled again: close when open
        opening.add_done_callback(lambda f: f.cancelled() or f.exception() or f.result().abort())
        return
    await asyncio.to_thread(writer.abort)  # after a write still running in its thread (cancelled while encoding)


def weights_warnings(weights: str) -> list[str]:
    if weights.startswith("synthetic"):
        return [f"synthetic weights ({weights}): the output is structured noise, not a face; serve a "
                "model repository exported from the official LivePortrait weights for real results"]
    return []


def summary(frames: int, fps: Fraction, width: int, height: int, size: int, has_audio: bool, ctx: RequestContext,
            seconds: float) -> pb.Summary:
    warnings = weights_warnings(ctx.weights)
    traffic = ctx.runner.traffic
    return pb.Summary(
        frames=frames, fps=fps_to_proto(fps), width=width, height=height, video_bytes=size,
        has_audio=has_audio, warnings=warnings, weights=ctx.weights, seconds=seconds,
        timings=[pb.StageTiming(stage=k, seconds=v) for k, v in ctx.timings.seconds.items()],
        triton_bytes_sent=traffic.sent, triton_bytes_received=traffic.received,
    )
