"""Batching study: throughput and latency vs concurrency with Triton's dynamic batching on and off (same models,
same machine, one replica), and the average batch size reached (inference_count / exec_count)."""
from __future__ import annotations

import asyncio
import io
from dataclasses import dataclass
from pathlib import Path

from .engine import Bounds, ClosedLoop
from .metrics import ServerProbe
from .replicas import BUILD, tiny_cpu_repository, triton_replicas, without_dynamic_batching
from .report import new_report
from .run import measure_levels
from .triton_load import TritonCall, open_client, render_inputs

BATCHED_MODEL = "warping_spade"  # the bottleneck whose batch size we report


@dataclass(frozen=True)
class BatchingConfig:
    concurrency: tuple[int, ...] = (1, 2, 4, 8)
    duration_s: float = 20.0
    model: str = "render_i420"
    repository: Path | None = None
    work_dir: Path = BUILD / "batching"
    warmup_calls: int = 2


async def interleaved(servers: dict, config: BatchingConfig, log=print) -> dict[str, list[dict]]:
    """For each concurrency, one level with batching on then one with it off: slow drifts of a shared machine
    hit both modes alike. The idle server of the pair uses no CPU."""
    clients = {mode: open_client(server.grpc_url) for mode, server in servers.items()}
    modes: dict[str, list[dict]] = {mode: [] for mode in servers}
    try:
        calls = {mode: TritonCall(client, config.model, render_inputs()) for mode, client in clients.items()}
        for call in calls.values():
            for _ in range(config.warmup_calls):
                await call()
        for concurrency in config.concurrency:
            for mode, call in calls.items():
                log(f"dynamic batching {mode}:")
                modes[mode] += await measure_levels(call, (ClosedLoop(concurrency),),
                                                    Bounds(config.duration_s, drain_s=120.0),
                                                    ServerProbe((servers[mode].metrics_url,)), log)
    finally:
        for client in clients.values():
            await client.close()
    return modes


def batch_size(level: dict) -> float | None:
    return level.get("server", {}).get("triton", {}).get(BATCHED_MODEL, {}).get("avg_batch_size")


def gains(on: list[dict], off: list[dict]) -> list[dict]:
    rows = []
    for a, b in zip(on, off):
        rows.append({
            "concurrency": a["concurrency"],
            "on_frames_per_s": a["frames_per_s"], "off_frames_per_s": b["frames_per_s"],
            "throughput_gain": round(a["frames_per_s"] / b["frames_per_s"], 3) if b["frames_per_s"] else None,
            "on_latency_ms": a["latency_ms"], "off_latency_ms": b["latency_ms"],
            "on_avg_batch_size": batch_size(a), "off_avg_batch_size": batch_size(b),
        })
    return rows


def run_batching(config: BatchingConfig, log=print) -> dict:
    repository = config.repository or tiny_cpu_repository()
    no_batching = without_dynamic_batching(repository, config.work_dir / "repo-no-dynamic-batching")
    report = new_report("batching", model=config.model, duration_s=config.duration_s, repository=str(repository))
    with triton_replicas(repository, 1, config.work_dir / "logs-on") as (on,), \
            triton_replicas(no_batching, 1, config.work_dir / "logs-off") as (off,):
        modes = asyncio.run(interleaved({"on": on, "off": off}, config, log))
    report["modes"] = modes
    report["gain"] = gains(modes["on"], modes["off"])
    return report


def batching_table(report: dict) -> str:
    out = io.StringIO()
    out.write(f"{'conc':>4} {'on fr/s':>8} {'off fr/s':>8} {'gain':>6} {'batch on':>8} {'batch off':>9} "
              f"{'on p50/p95/p99 ms':>22} {'off p50/p95/p99 ms':>22}\n")
    for g in report["gain"]:
        on, off = g["on_latency_ms"], g["off_latency_ms"]
        out.write(f"{g['concurrency']:>4} {g['on_frames_per_s']:>8.3f} {g['off_frames_per_s']:>8.3f} "
                  f"{g['throughput_gain'] or 0:>6.2f} {g['on_avg_batch_size'] or 0:>8.2f} "
                  f"{g['off_avg_batch_size'] or 0:>9.2f} "
                  f"{_triple(on):>22} {_triple(off):>22}\n")
    return out.getvalue()


def _triple(lat: dict) -> str:
    if lat["p50"] is None:
        return "-"
    return f"{lat['p50']:.0f}/{lat['p95']:.0f}/{lat['p99']:.0f}"
