"""The life of one AnimateStream call: frames read as they arrive, the newest processed, stale ones dropped.

A reader task takes every incoming message at once: it checks the frame (bytes, format, size) and the stream's frame
rate, and puts it in the ``FrameSlot``, which holds one frame: a newer frame replaces a waiting one (the older one is
dropped and counted). The animation loop takes the waiting frame whenever it is free, so a stream holds at most two
frames (one being processed, one waiting) and its latency stays near one frame's processing time however fast frames
come. The loop also ends the stream: at the session limit or after the idle timeout (DEADLINE_EXCEEDED), when the
server drains (UNAVAILABLE), on the reader's error (a bad frame: INVALID_ARGUMENT; too many frames per second:
RESOURCE_EXHAUSTED), when the caller's API key has no frame left (RESOURCE_EXHAUSTED, checked before each frame), or
when the client closed its side and the waiting frame was answered (OK). Cancelling the call cancels the loop and the
reader at once.
"""
from __future__ import annotations

import asyncio
import time
from collections import deque
from contextlib import asynccontextmanager
from typing import AsyncIterator, Awaitable, Callable

from protos.liveportrait.v1 import portrait_animator_pb2 as pb

from ..errors import DeadlineExceeded, InvalidRequest, Overloaded, Unavailable
from ..metrics import Metrics
from .animator import Arrival, LiveAnimator, check_frame

END = object()  # the client closed its side and no frame waits


def session_wait(draining: Callable[[], bool], now: float, ends: float, limits, last_input: float,
                 input_name: str) -> float:
    """How long a live session may wait for its next input (at most a second, to look again); raises when the
    session must end: the server drains, the session reached its length limit, or no ``input_name`` came for the
    idle timeout since ``last_input``."""
    if draining():
        raise Unavailable("the server is shutting down; reconnect (another replica will take the stream)")
    if now >= ends:
        raise DeadlineExceeded(f"the live session reached this server's limit of {limits.live_max_session_s:g} s; "
                               "start a new one")
    idle = limits.live_idle_timeout_s
    idle_left = last_input + idle - now
    if idle_left <= 0:
        raise DeadlineExceeded(f"no {input_name} for {idle:g} s: the stream was ended as idle")
    return min(ends - now, idle_left, 1.0)


class LiveStreams:
    """The streams open on this server: at most ``max_streams`` (one more: RESOURCE_EXHAUSTED at its setup)."""

    def __init__(self, max_streams: int, metrics: Metrics):
        self.max_streams = max_streams
        self.metrics = metrics
        self.active = 0

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self.active >= self.max_streams:
            raise Overloaded(f"the server already runs {self.active} live streams, its limit; retry later (or on "
                             "another replica)")
        self.active += 1
        self.metrics.live_streams.set(self.active)
        try:
            yield
        finally:
            self.active -= 1
            self.metrics.live_streams.set(self.active)


class FrameRate:
    """A token bucket of ``fps`` frames per second holding one second's frames: a client may send in bursts (network
    jitter) but not faster than ``fps`` on average for more than about a second."""

    def __init__(self, fps: float, clock=time.monotonic):
        self.fps = fps
        self.capacity = max(1.0, fps)
        self.tokens = self.capacity
        self.clock = clock
        self.updated = clock()

    def admit(self) -> bool:
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.fps)
        self.updated = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class FrameSlot:
    """The newest driving frame not started on (a newer one replaces it: the older is dropped and counted), the
    reference frames waiting (in order, never dropped: at most ``max_references``), and how the reader ended."""

    max_references = 2

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self.received = 0  # driving frames (not references)
        self.dropped = 0
        self.last_arrival = clock()
        self._frame: Arrival | None = None
        self._references: deque[Arrival] = deque()
        self._closed = False
        self._error: BaseException | None = None
        self._ready = asyncio.Event()

    def put(self, arrival: Arrival) -> bool:
        """Keep ``arrival``; True when it replaced a waiting frame (dropped)."""
        self.last_arrival = self.clock()
        dropped = False
        if arrival.reference:
            if len(self._references) >= self.max_references:
                raise Overloaded(f"more than {self.max_references} reference frames wait: send them less often")
            self._references.append(arrival)
        else:
            self.received += 1
            dropped = self._frame is not None
            self.dropped += dropped
            self._frame = arrival
        self._ready.set()
        return dropped

    def close(self, error: BaseException | None = None) -> None:
        """No more frames will come (``error``: why the reader stopped)."""
        self._closed = True
        self._error = self._error or error
        self._ready.set()

    async def take(self, timeout: float) -> Arrival | object | None:
        """The first waiting reference, else the waiting frame; ``END`` when the reader is done and nothing waits; None
        after ``timeout`` seconds without either. The reader's error is raised first."""
        if not self._ready.is_set():
            try:
                await asyncio.wait_for(self._ready.wait(), max(timeout, 0.0))
            except asyncio.TimeoutError:  # TimeoutError itself from Python 3.11
                return None
        if self._error is not None:
            raise self._error
        if self._references:
            item = self._references.popleft()
        elif self._frame is not None:
            item, self._frame = self._frame, None
        elif self._closed:
            return END
        else:
            self._ready.clear()
            return None
        if not self._references and self._frame is None and not self._closed:
            self._ready.clear()
        return item


class LiveSession:
    """Runs one stream: ``run(requests)`` is the response stream after the setup message."""

    def __init__(self, animator: LiveAnimator, limits, metrics: Metrics, draining: Callable[[], bool],
                 clock=time.monotonic, before_frame: Callable[[], Awaitable[None]] | None = None):
        """``limits``: the service's ``Limits`` (its ``live_*`` fields); ``before_frame``: awaited before each driving
        frame is animated (the caller's frame budget: it raises to end the stream)."""
        self.animator = animator
        self.before_frame = before_frame
        self.limits = limits
        self.metrics = metrics
        self.draining = draining
        self.clock = clock
        self.ends = clock() + limits.live_max_session_s
        self.slot = FrameSlot(clock)
        self.rate = FrameRate(limits.live_max_fps, clock)

    async def run(self, requests) -> AsyncIterator[pb.LiveResponse]:
        started = await self.animator.prepare()
        started.max_fps = self.limits.live_max_fps
        started.max_session_seconds = self.limits.live_max_session_s
        started.idle_timeout_seconds = self.limits.live_idle_timeout_s
        yield pb.LiveResponse(started=started)
        self.slot.last_arrival = self.clock()  # the idle time counts from here
        reader = asyncio.create_task(self._read(requests))
        try:
            while (item := await self._next()) is not END:
                if item.reference:
                    yield pb.LiveResponse(reference_set=await self.animator.reference(item))
                    continue
                if self.before_frame is not None:
                    await self.before_frame()
                frame = await self.animator.frame(item)
                frame.frames_received, frame.frames_dropped = self.slot.received, self.slot.dropped
                frame.server_seconds = time.perf_counter() - item.arrived
                self.metrics.live_frames.labels("rendered" if frame.face_found else "no_face").inc()
                self.metrics.live_frame_latency.observe(frame.server_seconds)
                self.metrics.client_bytes.labels("out").inc(len(frame.image))
                if frame.face_found:
                    await self.animator.ctx.frames_rendered(1)
                yield pb.LiveResponse(frame=frame)
        finally:
            reader.cancel()  # a cancelled call: the reader stops reading at once

    async def _next(self) -> Arrival | object:
        while True:
            wait = session_wait(self.draining, self.clock(), self.ends, self.limits, self.slot.last_arrival,
                                "driving frame")
            item = await self.slot.take(wait)
            if item is not None:
                return item

    async def _read(self, requests) -> None:
        """Every incoming message, checked, into the slot; the reader's end (or error) closes the slot."""
        limits = self.limits
        try:
            async for message in requests:
                kind = message.WhichOneof("part")
                if kind not in ("frame", "reference"):
                    raise InvalidRequest("after the setup only `frame` and `reference` messages may follow (`audio` "
                                         "needs setup.voice: voice mode)")
                frame = getattr(message, kind)
                what = f"driving frame {self.slot.received} (sequence {frame.sequence})" if kind == "frame" else \
                    f"the reference frame (sequence {frame.sequence})"
                check_frame(frame, what, limits.live_max_frame_bytes, limits.live_max_frame_side)
                self.metrics.client_bytes.labels("in").inc(len(frame.data))
                if not self.rate.admit():
                    raise Overloaded(f"driving frames arrive faster than this server's limit of "
                                     f"{limits.live_max_fps:g} frames per second per stream; send fewer")
                if self.slot.put(Arrival(frame, time.perf_counter(), kind == "reference")):
                    self.metrics.live_frames.labels("dropped").inc()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # reported by the loop as the call's status
            self.slot.close(exc)
            return
        self.slot.close()


async def setup_message(first: Awaitable, timeout_s: float):
    """The setup message, which must come within the idle timeout."""
    try:
        return await asyncio.wait_for(first, timeout_s)
    except asyncio.TimeoutError:  # TimeoutError itself from Python 3.11
        raise DeadlineExceeded(f"no setup message within {timeout_s:g} s") from None
