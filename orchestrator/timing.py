"""Per-request stage timings (wall seconds summed per stage)."""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator


class Timings:
    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started
