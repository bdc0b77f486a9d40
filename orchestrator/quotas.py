"""How much a key may use: requests running at once, rendered frames per minute, frames per request.

The state lives in a ``QuotaStore`` (orchestrator/quota_store.py: this process's own, or Redis shared by all
replicas). Only calls that render frames (``RENDERING_RPCS``) need frames left in the key's minute; every call counts
against its concurrency. A file request (AnimatePortrait) is admitted while the key's last minute leaves a frame and is charged as
its chunks render, so it may overdraw the minute by the rest of its length (the next requests wait); a live stream
(AnimateStream) is checked before each frame and charged for each frame it renders, so it stops with
``RESOURCE_EXHAUSTED`` (and ``retry-after-ms``) once the minute is spent, overdrawing it by at most one frame.
"""
from __future__ import annotations

import contextvars
import math
from dataclasses import dataclass

import grpc

from .errors import ServiceError
from .keys import KeyPolicy
from .quota_store import LocalQuotaStore, QuotaStore

RENDERING_RPCS = frozenset({"AnimatePortrait", "AnimateStream", "EditPortrait"})


class QuotaExceeded(ServiceError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED

    def __init__(self, message: str, retry_after_s: float | None = None):
        super().__init__(message)
        self.retry_after_s = retry_after_s

    def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        if self.retry_after_s is None:
            return ()
        return (("retry-after-ms", str(max(1, math.ceil(self.retry_after_s * 1000)))),)


class Quotas:
    """Per key name: the frames rendered in the last minute, at most ``frames_per_minute`` (a sliding window: any 60 s
    hold at most that many, plus what running requests overdrew), and leases on its ``max_concurrent`` slots."""

    def __init__(self, store: QuotaStore | None = None):
        self.store = store or LocalQuotaStore()

    async def admit(self, policy: KeyPolicy, renders: bool = True) -> str | None:
        """A concurrency lease (None when the key has no such limit); ``release`` it when the call ends."""
        lease = None
        if policy.max_concurrent:
            lease, running = await self.store.acquire(policy.name, policy.max_concurrent)
            if lease is None:
                raise QuotaExceeded(f"the key {policy.name!r} already runs {running} request(s), its limit; retry "
                                    "when one finishes", retry_after_s=1.0)
        if renders:
            try:
                await self.check_frames(policy)
            except BaseException:
                await self.release(policy, lease)
                raise
        return lease

    async def check_frames(self, policy: KeyPolicy) -> None:
        """Refused (with the wait until one frame is back) when the key rendered its frames of the last minute."""
        if policy.frames_per_minute:
            left, wait = await self.store.frames(policy.name, policy.frames_per_minute)
            if left < 1:
                raise QuotaExceeded(f"the key {policy.name!r} used its {policy.frames_per_minute:g} frames per "
                                    f"minute; retry in {wait:.1f} s", retry_after_s=wait)

    async def charge(self, policy: KeyPolicy, frames: int) -> None:
        if policy.frames_per_minute and frames:
            await self.store.frames(policy.name, policy.frames_per_minute, frames)

    async def release(self, policy: KeyPolicy, lease: str | None) -> None:
        if lease is not None:
            await self.store.release(policy.name, lease)


@dataclass
class Caller:
    """The authenticated caller of the current RPC (``current_caller``), for the pipeline to charge frames to."""

    policy: KeyPolicy
    quotas: Quotas
    frames_counter: object = None  # prometheus Counter with a "key" label, or None
    rendered: int = 0  # frames of this request so far

    def check_length(self, frames: int) -> None:
        """Refuse up front a request known to be longer than the key's limit (a count read from a container header
        may be missing or wrong: ``charge`` enforces the limit on the frames actually rendered)."""
        limit = self.policy.max_frames
        if limit and frames > limit:
            raise QuotaExceeded(f"the key {self.policy.name!r} may render at most {limit} frames per request; this "
                                f"one has {frames}")

    async def check_budget(self) -> None:
        """Before each frame of a live stream: the key's frames per request and frames per minute must allow one
        more."""
        limit = self.policy.max_frames
        if limit and self.rendered >= limit:
            raise QuotaExceeded(f"the key {self.policy.name!r} may render at most {limit} frames per request; the "
                                f"stream was ended after {self.rendered} frames")
        try:
            await self.quotas.check_frames(self.policy)
        except QuotaExceeded as exc:
            raise QuotaExceeded(f"{exc}; the stream was ended after {self.rendered} frames",
                                exc.retry_after_s) from None

    async def charge(self, frames: int) -> None:
        """``frames`` were rendered: counted for the key, added to its last minute."""
        if self.frames_counter is not None:
            self.frames_counter.labels(key=self.policy.name).inc(frames)
        self.rendered += frames
        await self.quotas.charge(self.policy, frames)
        limit = self.policy.max_frames
        if limit and self.rendered > limit:
            raise QuotaExceeded(f"the key {self.policy.name!r} may render at most {limit} frames per request; this "
                                f"one went past it")


current_caller: contextvars.ContextVar[Caller | None] = contextvars.ContextVar("liveportrait_caller", default=None)
