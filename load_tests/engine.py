"""The async load engine: closed-loop concurrency and open-loop Poisson arrivals, bounded in count and time.

A *call* is ``async () -> Outcome``; the engine knows nothing about what it sends. Each level stops starting calls
at ``duration_s`` or after ``max_requests``; calls still running get ``drain_s`` to finish, then are cancelled
and counted as ``CANCELLED_BY_LOAD_TEST``.
"""
from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from typing import Awaitable, Callable

import grpc

from .stats import LevelStats, Outcome, summarise

Call = Callable[[], Awaitable[Outcome]]
CUT_OFF = "CANCELLED_BY_LOAD_TEST"
CLIENT_OVERLOAD = "CLIENT_OVERLOAD"  # open loop: an arrival found max_in_flight calls running and was not sent


@dataclass(frozen=True)
class Bounds:
    duration_s: float
    max_requests: int = 100_000
    drain_s: float = 60.0


@dataclass(frozen=True)
class ClosedLoop:
    concurrency: int

    @property
    def label(self) -> str:
        return f"c{self.concurrency}"


@dataclass(frozen=True)
class OpenLoop:
    rate_rps: float
    seed: int = 0
    max_in_flight: int = 256

    @property
    def label(self) -> str:
        return f"r{self.rate_rps:g}"


Load = ClosedLoop | OpenLoop


async def timed(call: Call) -> Outcome:
    """Run one call; an exception becomes an Outcome with its gRPC status name (or the exception type)."""
    started = time.perf_counter()
    try:
        return await call()
    except grpc.aio.AioRpcError as exc:
        return Outcome(exc.code().name, time.perf_counter() - started)
    except asyncio.CancelledError:
        return Outcome(CUT_OFF, time.perf_counter() - started)
    except Exception as exc:  # a client-side failure is a result of the test, not a crash of it
        return Outcome(f"CLIENT_{type(exc).__name__}", time.perf_counter() - started)


class _Budget:
    """How many calls may still start, and until when (one per level, not shared)."""

    def __init__(self, bounds: Bounds):
        self.deadline = time.monotonic() + bounds.duration_s
        self.left = bounds.max_requests

    def take(self) -> bool:
        if self.left <= 0 or time.monotonic() >= self.deadline:
            return False
        self.left -= 1
        return True


async def _closed_loop(call: Call, load: ClosedLoop, bounds: Bounds) -> list[Outcome]:
    budget = _Budget(bounds)
    outcomes: list[Outcome] = []

    async def worker():
        while budget.take():
            outcomes.append(await timed(call))

    workers = [asyncio.create_task(worker()) for _ in range(load.concurrency)]
    await _drain(workers, budget.deadline + bounds.drain_s)
    return outcomes


async def _open_loop(call: Call, load: OpenLoop, bounds: Bounds) -> list[Outcome]:
    budget = _Budget(bounds)
    rng = random.Random(load.seed)
    outcomes: list[Outcome] = []
    running: set[asyncio.Task] = set()

    async def one():
        outcomes.append(await timed(call))

    next_at = time.monotonic()
    while True:
        next_at += rng.expovariate(load.rate_rps)
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        if not budget.take():
            break
        if len(running) >= load.max_in_flight:
            outcomes.append(Outcome(CLIENT_OVERLOAD, 0.0))
            continue
        task = asyncio.create_task(one())
        running.add(task)
        task.add_done_callback(running.discard)
    await _drain(list(running), budget.deadline + bounds.drain_s)
    return outcomes


async def _drain(tasks: list[asyncio.Task], until: float) -> None:
    """Wait for the tasks until ``until`` (monotonic), then cancel the rest (their calls record CUT_OFF)."""
    if not tasks:
        return
    _, pending = await asyncio.wait(tasks, timeout=max(0.0, until - time.monotonic()))
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending)


async def run_level(call: Call, load: Load, bounds: Bounds) -> tuple[LevelStats, list[Outcome]]:
    started = time.perf_counter()
    if isinstance(load, ClosedLoop):
        outcomes = await _closed_loop(call, load, bounds)
    else:
        outcomes = await _open_loop(call, load, bounds)
    return summarise(outcomes, time.perf_counter() - started), outcomes
