"""Per-level statistics: latency percentiles, throughput, error counts by gRPC status code."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

PERCENTILES = (50, 90, 95, 99)
OK = "OK"


@dataclass(frozen=True)
class Outcome:
    """One finished call: gRPC status name ("OK", "UNAVAILABLE", ...), wall time, time to the first streamed
    result (None when nothing came back) and frames produced."""

    code: str
    latency_s: float
    first_result_s: float | None = None
    frames: int = 0


def percentiles_ms(samples_s: list[float]) -> dict[str, float | None]:
    """p50/p90/p95/p99 plus mean and max, in milliseconds (None for an empty sample)."""
    keys = [f"p{p}" for p in PERCENTILES] + ["mean", "max"]
    if not samples_s:
        return dict.fromkeys(keys)
    ms = np.asarray(samples_s, dtype=np.float64) * 1e3
    values = list(np.percentile(ms, PERCENTILES)) + [ms.mean(), ms.max()]
    return {k: round(float(v), 3) for k, v in zip(keys, values)}


@dataclass(frozen=True)
class LevelStats:
    requests: int
    ok: int
    errors: dict[str, int]
    wall_s: float
    throughput_rps: float
    frames_per_s: float
    frames: int
    latency_ms: dict[str, float | None]
    first_result_ms: dict[str, float | None]


def summarise(outcomes: list[Outcome], wall_s: float) -> LevelStats:
    """Throughput counts successful calls over the level's wall time; latencies are of successful calls only."""
    ok = [o for o in outcomes if o.code == OK]
    errors = dict(sorted(Counter(o.code for o in outcomes if o.code != OK).items()))
    frames = sum(o.frames for o in ok)
    wall = max(wall_s, 1e-9)
    return LevelStats(
        requests=len(outcomes), ok=len(ok), errors=errors, wall_s=round(wall_s, 3),
        throughput_rps=round(len(ok) / wall, 4), frames_per_s=round(frames / wall, 4), frames=frames,
        latency_ms=percentiles_ms([o.latency_s for o in ok]),
        first_result_ms=percentiles_ms([o.first_result_s for o in ok if o.first_result_s is not None]),
    )
