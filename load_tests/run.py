"""``python -m load_tests run``: AnimatePortrait levels against any target, with the server-side breakdown (and, for
the ``audio`` scenario, audio seconds animated per wall second)."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import numpy as np

from .engine import Bounds, Call, ClosedLoop, Load, run_level, timed
from .metrics import ServerProbe
from .report import level_record, new_report
from .scenarios import AUDIO, AUDIO_FPS, AnimateCall, Scenario, build_payload, open_channel
from .stats import OK, Outcome


def load_fields(load: Load) -> dict[str, object]:
    if isinstance(load, ClosedLoop):
        return {"mode": "closed", "concurrency": load.concurrency, "rate_rps": None}
    return {"mode": "open", "concurrency": None, "rate_rps": load.rate_rps}


def audio_rates(outcomes: list[Outcome], wall_s: float) -> dict[str, object]:
    """A voice-driven level: seconds of audio animated per wall second, per stream (each call: its audio seconds,
    ceil(seconds x 25) frames / 25, over its own latency; 1.0 keeps pace with speech) and for the whole level."""
    ok = [o for o in outcomes if o.code == OK and o.latency_s > 0]
    per_stream = np.asarray([o.frames / AUDIO_FPS / o.latency_s for o in ok], np.float64)
    spread = {"min": None, "p10": None, "p50": None, "mean": None}  # the slow streams are the low values
    if len(per_stream):
        spread = {"min": per_stream.min(), "p10": np.percentile(per_stream, 10),
                  "p50": np.percentile(per_stream, 50), "mean": per_stream.mean()}
        spread = {k: round(float(v), 4) for k, v in spread.items()}
    audio_s = sum(o.frames for o in ok) / AUDIO_FPS
    return {"audio_s": round(audio_s, 3), "audio_s_per_wall_s": round(audio_s / max(wall_s, 1e-9), 4),
            "audio_s_per_wall_s_per_stream": spread}


async def measure_levels(call: Call, loads: tuple[Load, ...], bounds: Bounds, probe: ServerProbe,
                         log=print, audio: bool = False) -> list[dict]:
    """Run each level in turn; server metrics are read before and after each level (``audio``: the levels'
    audio rates, ``audio_rates``)."""
    levels = []
    for load in loads:
        before = await asyncio.to_thread(probe.snapshot)
        stats, outcomes = await run_level(call, load, bounds)
        server = await asyncio.to_thread(probe.breakdown, before)
        levels.append(level_record(load.label, load_fields(load), stats, server))
        line = (f"  {load.label}: {stats.ok}/{stats.requests} ok, {stats.throughput_rps:.3f} req/s, "
                f"{stats.frames_per_s:.2f} frames/s, p50 {stats.latency_ms['p50']} ms")
        if audio:
            rates = levels[-1]["audio"] = audio_rates(outcomes, stats.wall_s)
            line += (f", audio {rates['audio_s_per_wall_s']:.3f} s per wall s (per stream p50 "
                     f"{rates['audio_s_per_wall_s_per_stream']['p50']}, min "
                     f"{rates['audio_s_per_wall_s_per_stream']['min']})")
        log(f"{line}, errors {stats.errors or '-'}")
    return levels


@dataclass(frozen=True)
class RunConfig:
    target: str
    scenario: Scenario
    loads: tuple[Load, ...]
    bounds: Bounds
    probe: ServerProbe = field(default_factory=ServerProbe)
    warmup_calls: int = 1


async def run_animate(config: RunConfig, log=print) -> dict:
    payload = build_payload(config.scenario)
    report = new_report("animate", target=config.target, scenario=config.scenario.name,
                        clip_frames=config.scenario.frames, duration_s=config.bounds.duration_s,
                        max_requests=config.bounds.max_requests)
    async with open_channel(config.target) as channel:
        call = AnimateCall(channel, payload, config.scenario.timeout_s)
        warmup = [(await timed(call)).code for _ in range(config.warmup_calls)]
        report["warmup"] = warmup
        report["levels"] = await measure_levels(call, config.loads, config.bounds, config.probe, log,
                                                audio=config.scenario.name == AUDIO)
    return report
