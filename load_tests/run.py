"""``python -m load_tests run``: AnimatePortrait levels against any target, with the server-side breakdown."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from .engine import Bounds, Call, ClosedLoop, Load, run_level, timed
from .metrics import ServerProbe
from .report import level_record, new_report
from .scenarios import AnimateCall, Scenario, build_payload, open_channel


def load_fields(load: Load) -> dict[str, object]:
    if isinstance(load, ClosedLoop):
        return {"mode": "closed", "concurrency": load.concurrency, "rate_rps": None}
    return {"mode": "open", "concurrency": None, "rate_rps": load.rate_rps}


async def measure_levels(call: Call, loads: tuple[Load, ...], bounds: Bounds, probe: ServerProbe,
                         log=print) -> list[dict]:
    """Run each level in turn; server metrics are read before and after each level."""
    levels = []
    for load in loads:
        before = await asyncio.to_thread(probe.snapshot)
        stats, _ = await run_level(call, load, bounds)
        server = await asyncio.to_thread(probe.breakdown, before)
        levels.append(level_record(load.label, load_fields(load), stats, server))
        log(f"  {load.label}: {stats.ok}/{stats.requests} ok, {stats.throughput_rps:.3f} req/s, "
            f"p50 {stats.latency_ms['p50']} ms, errors {stats.errors or '-'}")
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
        report["levels"] = await measure_levels(call, config.loads, config.bounds, config.probe, log)
    return report
