"""``liveportrait live``'s status line: once a second while the stream runs, on stderr, the animated frames per
second received over the last second, the median latency of those frames and the frames dropped so far. On a
terminal it is one line rewritten in place; otherwise (a log, a pipe) a line each second. When more than half of
the frames are dropped it suggests, once, a lower ``--fps``: the rate the server kept up with."""
from __future__ import annotations

import asyncio
import math
import sys
import time

import numpy as np

from .live_stats import LiveStats

MIN_OFFERED = 10  # frames offered before a drop rate is worth a hint


class StatusLine:
    """Writes the status of a stream measured by ``stats`` (``update``, once a second; ``close`` at the end).
    ``suggest_fps``: hint at --fps when most frames are dropped (not for a voice, which has no --fps)."""

    def __init__(self, stats: LiveStats, fps_sent: float, stream=None, suggest_fps: bool = True,
                 clock=time.monotonic):
        self.stats = stats
        self.fps_sent = fps_sent
        self.stream = stream or sys.stderr
        self.suggest_fps = suggest_fps
        self.clock = clock
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.started = self.last_time = clock()
        self.last_results = 0
        self.seen_latencies = 0
        self.suggested = False
        self.pending_newline = False

    def line(self) -> str:
        """The status now; the figures since the previous line become the previous ones."""
        now = self.clock()
        stats = self.stats
        elapsed = max(now - self.last_time, 1e-9)
        fps_out = (stats.results - self.last_results) / elapsed
        delays = stats.latencies if stats.latencies else stats.audio_delays
        recent = delays[self.seen_latencies:]
        self.last_time, self.last_results, self.seen_latencies = now, stats.results, len(delays)
        p50 = f"{np.median(recent) * 1000:.0f} ms" if recent else "-"
        offered = stats.offered
        dropped = stats.client_dropped + stats.server_dropped
        return (f"live {now - self.started:5.0f} s: {fps_out:5.1f} fps out ({self.fps_sent:.3g} sent), p50 latency "
                f"{p50}, dropped {stats.drop_rate:4.0%} ({dropped} of {offered})")

    def update(self) -> None:
        """Writes the line (in place on a terminal) and, the first time most frames are dropped, the hint."""
        text = self.line()
        if self.tty:
            self.stream.write("\r" + text.ljust(100))
            self.pending_newline = True
        else:
            self.stream.write(text + "\n")
        hint = self.hint()
        if hint:
            self._end_line()
            self.stream.write(hint + "\n")
        self.stream.flush()

    def hint(self) -> str | None:
        """The --fps suggestion, once: when more than half of the frames are dropped and the server's rate is
        known."""
        stats = self.stats
        achieved = stats.achieved_fps
        if (self.suggested or not self.suggest_fps or stats.drop_rate <= 0.5
                or stats.sent + stats.client_dropped < MIN_OFFERED or achieved <= 0):
            return None
        self.suggested = True
        fps = max(1, math.floor(achieved))
        return (f"hint: {stats.drop_rate:.0%} of the frames are dropped: the server keeps up with about "
                f"{achieved:.1f} fps; try --fps {fps}")

    def _end_line(self) -> None:
        if self.pending_newline:
            self.stream.write("\n")
            self.pending_newline = False

    def close(self) -> None:
        """Ends the line rewritten in place, so that what follows starts on a line of its own."""
        self._end_line()
        self.stream.flush()


async def every_second(status: StatusLine, stop: asyncio.Event, interval: float = 1.0) -> None:
    """``status.update()`` every ``interval`` seconds until ``stop`` is set."""
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), interval)
        except asyncio.TimeoutError:
            status.update()
