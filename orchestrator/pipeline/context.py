"""What every stage of one request shares: its Triton runner, face analyzer and stage timings."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Awaitable, Callable

from ..face import FaceAnalyzer
from ..timing import Timings
from ..triton_client import RequestRunner


@dataclass
class RequestContext:
    runner: RequestRunner
    analyzer: FaceAnalyzer
    timings: Timings
    # awaited with the crops rendered in each chunk (frames x faces): metrics, and the caller's API key is charged
    frames_rendered: Callable[[int], Awaitable[None]]
    weights: str = ""


async def uncounted(frames: int) -> None:
    """``frames_rendered`` of work that no caller is charged for (benchmarks, tests)."""
