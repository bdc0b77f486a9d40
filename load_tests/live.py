"""``python -m load_tests live``: N concurrent AnimateStream streams (live animation, one camera each), every stream
sending a driving video's frames at a given frame rate for a given time. Per level (number of streams): the latency
from a frame's capture to its animated frame's arrival (p50/p95/p99), the server's share and one frame's render
time, the output frames per second each stream achieved, the drop rate, and the average batch size Triton's dynamic
batcher reached in ``render_i420`` (the frames of concurrent streams rendered together).

The video is decoded and JPEG-encoded once, before the levels, and replayed in a loop, so the client costs little CPU.
Streams are not in step, as real cameras are not: stream k of N starts k / N of a frame interval after stream 0.
A level opens its streams (each prepares its source), reads the server's metrics, sends for ``duration_s``, closes its
streams (the frames still waiting are answered) and reads the metrics again.
"""
from __future__ import annotations

import asyncio
import io
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import av
import cv2
import grpc

from client.api import AsyncPortraitClient
from client.live import LiveStream
from client.live_stats import LiveStats

from .metrics import ServerProbe
from .report import new_report
from .scenarios import EXAMPLES
from .stats import percentiles_ms

METRICS_SETTLE_S = 0.5  # wait before reading the metrics after a level
RENDER_MODEL = "render_i420"  # an ensemble: one request per animated frame
BATCHED_STEP = "warping_spade"  # its heavy step, where Triton's dynamic batcher groups the streams' frames


@dataclass(frozen=True)
class LiveConfig:
    target: str
    streams: tuple[int, ...] = (1, 2, 4, 8)  # the levels
    fps: float = 10.0  # frames sent per second by each stream
    duration_s: float = 20.0  # sending time per level
    source: Path = EXAMPLES / "source" / "s0.jpg"
    video: Path = EXAMPLES / "driving" / "d0.mp4"
    max_frames: int = 0  # frames of the video replayed (0: all)
    probe: ServerProbe = field(default_factory=ServerProbe)
    warmup_s: float = 3.0  # one stream before the first level, not measured
    close_timeout_s: float = 60.0  # for the waiting frames to be answered at the end of a level


def driving_frames(video: Path, max_frames: int = 0, quality: int = 90) -> list[bytes]:
    """The video's frames as JPEG files' bytes (what a client sends as FRAME_ENCODED)."""
    frames = []
    with av.open(str(video)) as container:
        for frame in container.decode(video=0):
            bgr = frame.to_ndarray(format="bgr24")
            frames.append(cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes())
            if len(frames) == max_frames:
                break
    if not frames:
        raise ValueError(f"no frames in {video}")
    return frames


async def _results(stream: LiveStream, queued_s: list[float]) -> str:
    """Reads every result (``stream.stats`` counts them), keeping the time each animated frame waited on the server
    while the stream's previous frame was processed; the call's status name."""
    try:
        async for result in stream:
            if result.face_found:
                queued_s.append(result.timings.get("queue", 0.0))
    except grpc.aio.AioRpcError as exc:
        return exc.code().name
    return "OK"


async def drive(stream: LiveStream, frames: list[bytes], fps: float, start: float, ends: float,
                close_timeout_s: float, queued_s: list[float]) -> str:
    """Send frame i at ``start + i / fps`` (monotonic clock) until ``ends``, then close; the call's status name."""
    reader = asyncio.create_task(_results(stream, queued_s))
    i = 0
    while (at := start + i / fps) < ends and not reader.done():
        await asyncio.sleep(max(0.0, at - time.monotonic()))
        stream.send(frames[i % len(frames)])
        i += 1
    try:
        await asyncio.wait_for(stream.close(), close_timeout_s)
    except asyncio.TimeoutError:  # TimeoutError itself from Python 3.11
        stream.cancel()
        return "CLIENT_CLOSE_TIMEOUT"
    return await reader


async def run_streams(client: AsyncPortraitClient, config: LiveConfig, frames: list[bytes], count: int,
                      duration_s: float) -> tuple[list[LiveStats], list[float], Counter, float, dict]:
    """One level: ``count`` streams sending for ``duration_s``; (each started stream's stats, the server queue times,
    status names of every stream, wall seconds of the sending and closing, server breakdown)."""
    streams = [client.live(config.source, fps=config.fps) for _ in range(count)]
    started = await asyncio.gather(*(s.start() for s in streams), return_exceptions=True)
    codes = Counter(r.code().name if isinstance(r, grpc.aio.AioRpcError) else f"CLIENT_{type(r).__name__}"
                    for r in started if isinstance(r, BaseException))
    running = [s for s, r in zip(streams, started) if not isinstance(r, BaseException)]
    before = await asyncio.to_thread(config.probe.snapshot)
    t0 = time.monotonic() + 0.05
    interval = 1.0 / config.fps
    queued: list[float] = []
    ended = await asyncio.gather(*(drive(s, frames, config.fps, t0 + k * interval / count, t0 + duration_s,
                                         config.close_timeout_s, queued) for k, s in enumerate(running)))
    wall = time.monotonic() - t0
    await asyncio.sleep(METRICS_SETTLE_S)  # Triton counts an ensemble's request after its response has left
    server = await asyncio.to_thread(config.probe.breakdown, before)
    codes.update(ended)
    return [s.stats for s in running], queued, codes, wall, server


def level_record(count: int, fps: float, stats: list[LiveStats], queued_s: list[float], codes: Counter,
                 wall_s: float, server: dict) -> dict:
    offered = sum(s.sent + s.client_dropped for s in stats)
    dropped = sum(s.client_dropped + s.server_dropped for s in stats)
    latencies = [v for s in stats for v in s.latencies]
    server_s = [v for s in stats for v in s.server_seconds]
    render_s = [v for s in stats for v in s.render_seconds]
    per_stream = [round(s.achieved_fps, 3) for s in stats]
    record = {
        "level": f"s{count}", "streams": count, "fps_sent": fps, "wall_s": round(wall_s, 3),
        "status": dict(sorted(codes.items())), "errors": {c: n for c, n in sorted(codes.items()) if c != "OK"},
        "frames_offered": offered, "frames_sent": sum(s.sent for s in stats),
        "results": sum(s.results for s in stats), "no_face": sum(s.no_face for s in stats),
        "dropped_server": sum(s.server_dropped for s in stats), "dropped_client": sum(s.client_dropped for s in stats),
        "drop_rate": round(dropped / offered, 4) if offered else 0.0,
        "animated_per_s": round(sum(s.results - s.no_face for s in stats) / wall_s, 3) if wall_s > 0 else 0.0,
        "fps_per_stream": per_stream,
        "fps_per_stream_mean": round(sum(per_stream) / len(per_stream), 3) if per_stream else 0.0,
        "fps_per_stream_min": min(per_stream, default=0.0),
        "latency_ms": percentiles_ms(latencies), "server_ms": percentiles_ms(server_s),
        "queue_ms": percentiles_ms(queued_s), "render_ms": percentiles_ms(render_s),
    }
    lat, render = record["server_ms"]["p50"], record["render_ms"]["p50"]
    record["server_p50_over_render_p50"] = round(lat / render, 3) if lat and render else None
    triton = server.get("triton", {})
    record["render_requests"] = triton.get(RENDER_MODEL, {}).get("requests")
    # the batched step inside the ensemble; the pytorch target's render_i420 is one fused model that batches itself
    batched = triton.get(BATCHED_STEP) or triton.get(RENDER_MODEL, {})
    record["render_avg_batch_size"] = batched.get("avg_batch_size")
    if server:
        record["server"] = server
    return record


async def run_live(config: LiveConfig, log=print) -> dict:
    frames = await asyncio.to_thread(driving_frames, config.video, config.max_frames)
    report = new_report("live", target=config.target, fps=config.fps, duration_s=config.duration_s,
                        source=str(config.source), video=str(config.video), video_frames=len(frames))
    async with AsyncPortraitClient(config.target) as client:
        if config.warmup_s > 0:
            _, _, codes, _, _ = await run_streams(client, config, frames, 1, config.warmup_s)
            report["warmup"] = dict(codes)
        for count in config.streams:
            stats, queued, codes, wall, server = await run_streams(client, config, frames, count, config.duration_s)
            record = level_record(count, config.fps, stats, queued, codes, wall, server)
            report["levels"].append(record)
            lat = record["latency_ms"]
            log(f"  {count} stream(s): {record['results']} frames, {record['fps_per_stream_mean']:.2f} fps/stream, "
                f"drops {record['drop_rate']:.1%}, latency p50 {lat['p50']} ms, render batch "
                f"{record['render_avg_batch_size']}, status {record['status']}")
    return report


def run_live_local(config: LiveConfig, log=print) -> dict:
    """``run_live`` against a tiny CPU stack started here (one Triton replica + the orchestrator, as
    ``liveportrait up``; logs in build/load/live) with room for the largest level's streams; stopped at the end."""
    from dataclasses import replace

    from orchestrator.embedded import OrchestratorProcess

    from .replicas import BUILD, tiny_cpu_repository, triton_replicas

    work_dir = BUILD / "live"
    with triton_replicas(tiny_cpu_repository(), 1, work_dir) as (triton,), OrchestratorProcess(
            triton.grpc_url, work_dir / "orchestrator-live.log",
            extra_args=("--live-max-streams", str(max(config.streams)))) as orchestrator:
        local = replace(config, target=orchestrator.target,
                        probe=ServerProbe((triton.metrics_url,), (orchestrator.metrics_url,)))
        return asyncio.run(run_live(local, log))


def _ms(value) -> str:
    return "-" if value is None else f"{value:.0f}"


def live_table(report: dict) -> str:
    """The levels as a markdown table."""
    out = io.StringIO()
    out.write(f"{report['fps']:g} fps per stream, {report['duration_s']:g} s per level\n\n"
              "| streams | frames sent | animated (per s) | drop rate | fps per stream (min) | latency p50/p95/p99 ms | "
              "server p50 ms (queue) | render p50 ms | server/render | render_i420 avg batch | errors |\n"
              "|---|---|---|---|---|---|---|---|---|---|---|\n")
    for lv in report["levels"]:
        lat = lv["latency_ms"]
        batch = lv["render_avg_batch_size"]
        ratio = lv["server_p50_over_render_p50"]
        errors = ", ".join(f"{c}={n}" for c, n in lv["errors"].items()) or "-"
        out.write(f"| {lv['streams']} | {lv['frames_sent']} | {lv['results'] - lv['no_face']} "
                  f"({lv['animated_per_s']:.1f}) | "
                  f"{lv['drop_rate']:.1%} | {lv['fps_per_stream_mean']:.2f} ({lv['fps_per_stream_min']:.2f}) | "
                  f"{_ms(lat['p50'])}/{_ms(lat['p95'])}/{_ms(lat['p99'])} | {_ms(lv['server_ms']['p50'])} "
                  f"({_ms(lv['queue_ms']['p50'])}) | "
                  f"{_ms(lv['render_ms']['p50'])} | {'-' if ratio is None else f'{ratio:.2f}'} | "
                  f"{'-' if batch is None else f'{batch:.2f}'} | {errors} |\n")
    return out.getvalue()
