"""Bounded concurrency with a bounded wait queue: beyond both, a request is refused at once (RESOURCE_EXHAUSTED)."""
from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from typing import AsyncIterator

from .errors import Overloaded
from .metrics import Metrics


class Admission:
    def __init__(self, max_concurrent: int, max_queued: int, metrics: Metrics):
        if max_concurrent < 1 or max_queued < 0:
            raise ValueError("max_concurrent must be >= 1 and max_queued >= 0")
        self.max_concurrent = max_concurrent
        self.max_queued = max_queued
        self.metrics = metrics
        self._slots = asyncio.Semaphore(max_concurrent)
        self._running = 0
        self._waiting = 0

    @property
    def running(self) -> int:
        return self._running

    @property
    def waiting(self) -> int:
        return self._waiting

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self._running + self._waiting >= self.max_concurrent + self.max_queued:
            raise Overloaded(f"the server is at capacity ({self.max_concurrent} running, {self.max_queued} "
                             "queued); retry later")
        self._waiting += 1
        self.metrics.queued.set(self._waiting)
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1
            self.metrics.queued.set(self._waiting)
        self._running += 1
        self.metrics.in_flight.set(self._running)
        try:
            yield
        finally:
            self._running -= 1
            self.metrics.in_flight.set(self._running)
            self._slots.release()
