"""What every stage of one request shares: its Triton runner, face analyzer and stage timings."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..face import FaceAnalyzer
from ..timing import Timings
from ..triton_client import RequestRunner


@dataclass
class RequestContext:
    runner: RequestRunner
    analyzer: FaceAnalyzer
    timings: Timings
    frames_rendered: Callable[[int], None]  # called with the crops rendered in each chunk (frames x faces)
    weights: str = ""
