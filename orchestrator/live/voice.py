"""AnimateStream's voice mode: a live voice in (``audio`` chunks of PCM), animated frames out, one per 1/25 s of audio.

Per chunk: checked (rate, encoding, length, finite samples) and resampled to 16 kHz mono (PyAV's resampler, kept
across chunks) by the reader task; the animation loop takes all the audio waiting and runs Ditto's online mode
(``audio.features.StreamWindows`` -> the served ``audio_encoder`` -> ``audio.drivers.StreamingMotion``: 10-frame
blocks, 10 DDIM steps through the served ``lmdm`` by default) in a worker thread, as ``pipeline.audio_driving`` does
for a file; each frame's motion is mixed onto the source and handed to the camera mode's ``LiveAnimator.animate``
(keypoints, render, paste-back, JPEG/I420). Frame k carries sequence k and capture time k x 40 ms on the audio's
clock; the first frame needs ~0.885 s of audio (``LOOKAHEAD_S``).

Policy: every frame of the voice is animated unless the client asks for real-time pacing
(``voice.drop_late_frames``). With it:
- a frame more than ``LATE_S`` behind the audio received (the look-ahead aside) is skipped and counted, except the
  newest frame generated, so that even a server far slower than the voice shows the portrait move;
- when the server falls behind the voice itself (more than ``CATCH_UP_S`` of audio waiting: a CPU, or a GPU shared by
  too many streams), the oldest audio waiting is not animated at all. Only the newest ``KEEP_S`` is kept, the frames
  of the audio skipped are counted as dropped, and the frames after keep their times: the stream goes on, choppier,
  with a bounded delay.
Without pacing, a client sending audio faster than the server animates it is held to ``max_audio_ahead_s`` seconds
of audio waiting (beyond: RESOURCE_EXHAUSTED), so memory stays bounded (the motion generator itself keeps at most two
windows). The stream's limits are the camera mode's (session length, idle time without audio, draining) and each
frame is checked against the caller's budget and charged as it renders. Cancelling the call cancels the loop, the
reader and the worker thread's Triton call in flight.
"""
from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from dataclasses import dataclass, replace
from typing import AsyncIterator, Awaitable, Callable

import av
import numpy as np

from protos.liveportrait.v1 import portrait_animator_pb2 as pb

from ..audio.conditions import emotion_vector, frame_conditions
from ..audio.drivers import ONLINE, MotionGenerator, StreamingMotion
from ..audio.features import (FEATURE_DIM, FPS, SAMPLE_RATE, StreamWindows, encode_windows, num_frames,
                              silence_features)
from ..audio.sampler import DdimSampler, Noise, ddim_schedule
from ..errors import InvalidRequest, Overloaded
from ..metrics import Metrics
from ..options import AnimateOptions, AudioRequestOptions, audio_request_options
from ..pipeline.audio_animation import AudioModelsRunner, motion_options, with_source_eyes
from ..keypoints import NUM_KP
from ..pipeline.audio_driving import MOTION_DIM, SEQ_FRAMES, AudioSource, ServedAudioNetworks, mixed_motion
from ..timing import Timings
from .animator import LiveAnimator
from .session import session_wait

F32 = np.float32
LOOKAHEAD_S = 0.885  # audio a block's first frame waits for: 20 feature frames = 4 encoder windows (drivers.py)
LATE_S = 0.4  # drop_late_frames: a frame more than one block (10 frames) behind the audio received is skipped
CATCH_UP_S = 2.5  # drop_late_frames: more audio than this waiting to be animated is cut down to KEEP_S
KEEP_S = 1.7  # the newest audio kept: its frames are not late (LOOKAHEAD_S + LATE_S), with 0.4 s of context before
FRAME_SAMPLES = SAMPLE_RATE // FPS  # 16 kHz samples per frame
MIN_RATE, MAX_RATE = 8000, 48000
ONLINE_STEPS = ONLINE.steps
END = object()


def voice_options(setup: pb.LiveSetup, options: AnimateOptions) -> AudioRequestOptions:
    """``setup.voice.options`` checked (sampling steps default to 10, Ditto's online mode); what a voice does not
    combine with is refused in words."""
    if options.model_set != "human":
        raise InvalidRequest("voice mode cannot be combined with model_set ANIMAL (the motion generator was trained on "
                             "human faces)")
    if options.keypoints.eye_retargeting or options.keypoints.lip_retargeting:
        raise InvalidRequest("voice mode cannot be combined with eye_retargeting or lip_retargeting (they follow a "
                             "driving face's eye and lip ratios, which a voice has not)")
    if setup.HasField("fps") and setup.fps != FPS:
        raise InvalidRequest(f"voice mode answers {FPS} frames per second of audio: leave fps unset "
                             f"(got {setup.fps:g})")
    message = setup.voice.options
    parsed = audio_request_options(message, "voice.options")
    return parsed if message.HasField("sampling_steps") else replace(parsed, sampling_steps=ONLINE_STEPS)


class AudioChunks:
    """Live audio chunks -> 16 kHz mono float32, checked; the resampler is kept across chunks (no seams)."""

    def __init__(self):
        self.rate: int | None = None
        self.received = 0  # chunks
        self._resampler: av.AudioResampler | None = None

    def __call__(self, chunk: pb.LiveAudio) -> np.ndarray:
        what = f"audio chunk {self.received}"
        self.received += 1
        rate = chunk.sample_rate
        if not MIN_RATE <= rate <= MAX_RATE:
            raise InvalidRequest(f"{what}: sample_rate must be {MIN_RATE} to {MAX_RATE} Hz, got {rate}")
        if self.rate is not None and rate != self.rate:
            raise InvalidRequest(f"{what}: sample_rate {rate} Hz differs from the stream's {self.rate} Hz (the first "
                                 "chunk's); keep one rate per stream")
        if chunk.encoding == pb.PCM_F32LE:
            dtype, scale = np.dtype("<f4"), 1.0
        elif chunk.encoding == pb.PCM_S16LE:
            dtype, scale = np.dtype("<i2"), 1.0 / 32768
        else:
            raise InvalidRequest(f"{what}: unsupported encoding value {chunk.encoding}")
        size = len(chunk.pcm)
        if size == 0:
            raise InvalidRequest(f"{what} has no samples")
        if size % dtype.itemsize:
            raise InvalidRequest(f"{what}: {size} bytes is not a whole number of {dtype.itemsize}-byte samples")
        if size // dtype.itemsize > rate:
            raise InvalidRequest(f"{what} holds {size // dtype.itemsize} samples, more than one second at {rate} Hz; "
                                 "send shorter chunks")
        samples = np.frombuffer(chunk.pcm, dtype).astype(F32) * F32(scale)
        if not np.all(np.isfinite(samples)):
            raise InvalidRequest(f"{what} has samples that are not finite numbers (NaN or infinity)")
        self.rate = rate
        return self._resample(samples)

    def _resample(self, samples: np.ndarray | None) -> np.ndarray:
        if self.rate in (None, SAMPLE_RATE):
            return np.zeros(0, F32) if samples is None else samples
        if self._resampler is None:
            self._resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        frame = None
        if samples is not None:
            frame = av.AudioFrame.from_ndarray(samples[None], format="flt", layout="mono")
            frame.sample_rate = self.rate
        parts = [f.to_ndarray().reshape(-1) for f in self._resampler.resample(frame)]
        return np.concatenate(parts).astype(F32) if parts else np.zeros(0, F32)

    def flush(self) -> np.ndarray:
        """The resampler's last samples (at the end of the stream)."""
        return self._resample(None)


class VoiceMotion:
    """Ditto's online mode over any encoder and denoiser callables (synchronous: run in a worker thread)."""

    def __init__(self, encode, denoise, source: AudioSource, options: AudioRequestOptions):
        motion = motion_options(options)
        self.encode = encode
        self.windows = StreamWindows()
        sampler = DdimSampler(denoise, ddim_schedule(motion.steps),
                              Noise.seeded(int(motion.seed), motion.steps, (SEQ_FRAMES, MOTION_DIM)), motion.guidance)
        generator = MotionGenerator(sampler, replace(ONLINE, steps=motion.steps), source.motion.vector())
        source_conditions, emotion = source.conditions(motion), emotion_vector(motion.emotion)
        self.streaming = StreamingMotion(generator, lambda f: frame_conditions(f, source_conditions, emotion),
                                         silence_features(encode, ONLINE.overlap))

    def push(self, samples: np.ndarray) -> np.ndarray:
        """16 kHz samples -> the generated motion frames (m, 265) now final."""
        return self.streaming.push(self._features(self.windows.push(samples)))

    def finish(self) -> np.ndarray:
        """The end of the voice: the last windows' frames."""
        frames = self.streaming.push(self._features(self.windows.finish()))
        return np.concatenate([frames, self.streaming.finish()])

    def _features(self, windows: np.ndarray) -> np.ndarray:
        return encode_windows(self.encode, windows).reshape(-1, FEATURE_DIM)


@dataclass
class AudioQueue:
    """The resampled audio waiting to be animated (bounded by ``max_samples``), and how the reader ended."""

    max_samples: int
    clock: Callable[[], float] = time.monotonic

    def __post_init__(self):
        self.parts: list[np.ndarray] = []
        self.waiting = 0
        self.closed = False
        self.error: BaseException | None = None
        self.last_arrival = self.clock()
        self.ready = asyncio.Event()

    def put(self, samples: np.ndarray) -> None:
        self.last_arrival = self.clock()
        if self.waiting + len(samples) > self.max_samples:
            raise Overloaded(f"more than {self.max_samples / SAMPLE_RATE:g} s of audio wait to be animated: the voice "
                             "arrives faster than this server animates it; send it at real time")
        self.parts.append(samples)
        self.waiting += len(samples)
        self.ready.set()

    def close(self, error: BaseException | None = None) -> None:
        self.closed, self.error = True, self.error or error
        self.ready.set()

    async def take(self, timeout: float) -> np.ndarray | object | None:
        """All waiting samples; ``END`` when the reader is done and nothing waits; None after ``timeout`` s."""
        if not self.ready.is_set():
            try:
                await asyncio.wait_for(self.ready.wait(), max(timeout, 0.0))
            except asyncio.TimeoutError:  # TimeoutError itself from Python 3.11
                return None
        if self.error is not None:
            raise self.error
        self.ready.clear()
        if self.parts:
            samples = np.concatenate(self.parts)
            self.parts, self.waiting = [], 0
            if self.closed:
                self.ready.set()
            return samples
        return END if self.closed else None


class VoiceSession:
    """Runs one voice-mode stream: ``run(requests)`` is the response stream after the setup message."""

    def __init__(self, animator: LiveAnimator, audio_options: AudioRequestOptions, limits, metrics: Metrics,
                 draining: Callable[[], bool], clock=time.monotonic,
                 before_frame: Callable[[], Awaitable[None]] | None = None, drop_late: bool = False):
        """``drop_late``: skip frames that fall behind the voice (``LATE_S``) instead of rendering them late."""
        self.animator = animator
        self.audio_options = audio_options
        self.limits = limits
        self.metrics = metrics
        self.draining = draining
        self.clock = clock
        self.before_frame = before_frame
        self.ends = clock() + limits.live_max_session_s
        self.max_ahead_s = limits.live_max_audio_ahead_s
        self.queue = AudioQueue(int(self.max_ahead_s * SAMPLE_RATE), clock)
        self.chunks = AudioChunks()
        self.samples = 0  # 16 kHz samples taken from the queue (handed to the motion generator or skipped)
        self.pushed = 0  # 16 kHz samples handed to the motion generator
        self.generated = 0  # motion frames generated (frame j: the pushed audio's frame j)
        self.skips: deque[tuple[int, int]] = deque()  # (generated frame index, frames of audio skipped just before)
        self.emitted = 0  # frames done (answered, skipped as late or with their audio): the next one's sequence
        self.dropped = 0
        self.drop_late = drop_late
        self.networks: ServedAudioNetworks | None = None
        self.reference: np.ndarray | None = None
        self.source: AudioSource | None = None
        self.motion: VoiceMotion | None = None

    async def run(self, requests) -> AsyncIterator[pb.LiveResponse]:
        animator = self.animator
        animator.ctx = replace(animator.ctx, runner=AudioModelsRunner(animator.ctx.runner))
        started = await animator.prepare()
        self.networks = ServedAudioNetworks(animator.ctx, asyncio.get_running_loop())
        source = AudioSource.from_extractor(animator.source_outputs, eye_open=animator.source.eye_open)
        self.source = source
        with animator.ctx.timings.stage("audio_motion"):
            motion = self.motion = await self._in_thread(VoiceMotion, self.networks.encode, self.networks.denoise,
                                                         source, self.audio_options)
        started.timings.extend([pb.StageTiming(stage="audio_motion",
                                               seconds=animator.ctx.timings.seconds["audio_motion"])])
        started.max_fps = FPS
        started.max_session_seconds = self.limits.live_max_session_s
        started.idle_timeout_seconds = self.limits.live_idle_timeout_s
        started.audio_lookahead_seconds = LOOKAHEAD_S
        started.max_audio_ahead_seconds = self.max_ahead_s
        yield pb.LiveResponse(started=started)
        self.queue.last_arrival = self.clock()
        reader = asyncio.create_task(self._read(requests))
        try:
            while (samples := await self._next()) is not END:
                samples = self._catch_up(samples)
                self.samples += len(samples)
                self.pushed += len(samples)
                generated = await self._in_thread(motion.push, samples)
                async for response in self._frames(generated, self.samples):
                    yield response
            tail = self.chunks.flush()
            self.samples += len(tail)
            self.pushed += len(tail)
            generated = await self._in_thread(lambda: np.concatenate([motion.push(tail), motion.finish()]))
            left = num_frames(self.samples) - self.emitted - sum(frames for _, frames in self.skips)  # as a file's
            async for response in self._frames(generated[:max(0, left)], self.samples):
                yield response
        finally:
            reader.cancel()
            self.networks.cancel()

    async def _frames(self, generated: np.ndarray, samples: int) -> AsyncIterator[pb.LiveResponse]:
        """The generated motion frames -> animated frames, in order."""
        if len(generated) == 0:
            return
        animator = self.animator
        if self.reference is None:  # the first block: the motion is relative to the source's own (frame d0)
            self.reference = self.motion.streaming.reference
            animator.stage.composer.compose(mixed_motion(self.source, self.reference[None], self.reference).motion)
        mixed = mixed_motion(self.source, generated, self.reference, self.audio_options.head_motion).motion
        if not self.audio_options.eye_blinks:
            mixed = with_source_eyes(mixed, self.source.motion.fields["exp"].reshape(NUM_KP, 3))
        received = samples / SAMPLE_RATE
        for i in range(len(generated)):
            while self.skips and self.skips[0][0] <= self.generated:
                self._drop(self.skips.popleft()[1])
            self.generated += 1
            if self.drop_late and i < len(generated) - 1 and self._late(self.emitted):  # the newest is shown
                self._drop(1)
                continue
            if self.before_frame is not None:
                await self.before_frame()
            timings = Timings()
            started = time.perf_counter()
            k = self.emitted
            frame = pb.LiveFrame(sequence=k, capture_time_us=round(k * 1e6 / FPS), format=animator.output.format,
                                 face_found=True, audio_seconds_received=received)
            frame.image, frame.width, frame.height = await animator.animate(mixed[i:i + 1], timings)
            frame.timings.extend(pb.StageTiming(stage=n, seconds=v) for n, v in timings.seconds.items())
            frame.server_seconds = time.perf_counter() - started
            frame.frames_received, frame.frames_dropped = frame.sequence + 1, self.dropped
            self.emitted += 1
            self.metrics.live_frames.labels("rendered").inc()
            self.metrics.live_frame_latency.observe(frame.server_seconds)
            self.metrics.client_bytes.labels("out").inc(len(frame.image))
            await animator.ctx.frames_rendered(1)
            yield pb.LiveResponse(frame=frame)

    def _drop(self, frames: int) -> None:
        self.emitted += frames
        self.dropped += frames
        self.metrics.live_frames.labels("dropped").inc(frames)

    def _catch_up(self, samples: np.ndarray) -> np.ndarray:
        """Real-time pacing: a backlog over ``CATCH_UP_S`` (the server slower than the voice) is cut to its newest
        ``KEEP_S``, whole frames skipped; they are counted as dropped when the frames reach them."""
        if not self.drop_late or len(samples) <= CATCH_UP_S * SAMPLE_RATE:
            return samples
        frames = (len(samples) - int(KEEP_S * SAMPLE_RATE)) // FRAME_SAMPLES
        self.skips.append((math.ceil(self.pushed / FRAME_SAMPLES), frames))
        self.samples += frames * FRAME_SAMPLES
        return samples[frames * FRAME_SAMPLES:]

    def _late(self, k: int) -> bool:
        """Frame k's time is more than ``LATE_S`` behind the audio received (the look-ahead aside)."""
        received = (self.samples + self.queue.waiting) / SAMPLE_RATE
        return received - k / FPS - LOOKAHEAD_S > LATE_S

    async def _in_thread(self, function, *args):
        """``function(*args)`` in a worker thread; a cancelled call stops it at its next Triton call."""
        work = asyncio.ensure_future(asyncio.to_thread(function, *args))
        try:
            return await asyncio.shield(work)
        except asyncio.CancelledError:
            self.networks.cancel()
            await asyncio.gather(work, return_exceptions=True)
            raise

    async def _next(self) -> np.ndarray | object:
        """The audio waiting (or ``END``); the idle time counts from when the loop is free and nothing waits (a
        backlog being animated is not idleness)."""
        free_since = self.clock()
        while True:
            wait = session_wait(self.draining, self.clock(), self.ends, self.limits,
                                max(self.queue.last_arrival, free_since), "audio")
            item = await self.queue.take(wait)
            if item is not None:
                return item

    async def _read(self, requests) -> None:
        """Every incoming chunk, checked and resampled, into the queue; the reader's end (or error) closes it."""
        try:
            async for message in requests:
                if message.WhichOneof("part") != "audio":
                    raise InvalidRequest("in voice mode only `audio` messages may follow the setup")
                self.metrics.client_bytes.labels("in").inc(len(message.audio.pcm))
                self.queue.put(self.chunks(message.audio))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # reported by the loop as the call's status
            self.queue.close(exc)
            return
        self.queue.close()
