"""``python -m load_tests.webrtc``: glass to glass through the WebRTC gateway, and the direct gRPC live path on the
same stack in the same run.

Per level (N peers): N aiortc peers (``client.gateway.peer.WhipPeer``) each play ``d0.mp4``'s frames as a camera at
``--fps`` to ``liveportrait gateway`` for ``--duration`` seconds, then N direct ``AnimateStream`` streams
(``load_tests.live``) send the same frames at the same rate. Reported per path: capture -> display latency
p50/p95/p99 (WebRTC: the camera track handing a frame to its encoder -> the animated frame decoded at the peer,
matched through the gateway's ``timing`` data channel; gRPC: the frame handed to ``LiveStream.send`` -> its animated
JPEG received, not decoded), animated frames shown per second per peer, the drop rate (1 - animated frames shown /
frames captured), and the orchestrator's own time per frame (its arrival there -> its answer; WebRTC: the timing
messages' ``server_ms``). Without ``--target`` a tiny CPU stack (Triton, the orchestrator, the gateway) is started
here on loopback and stopped at the end.

    python -m load_tests.webrtc --peers 1,4 --fps 10 --duration 20 [--report artifacts/load/webrtc.json]

``--voice``: the voice mode instead (the stack started here serves the audio models). Per level, N aiortc peers
(``client.gateway.voice_peer.VoicePeer``) each speak ``--duration`` seconds of speech-like syllables (one every
0.5 s) and close their microphone; the gateway animates the rest and plays it out. Reported: the A/V offset at the
peer per syllable (its onset heard minus its picture shown: positive, the sound after the mouth) p50/p95 and the
largest, the syllables heard within 250 ms of their picture, voice -> mouth (a syllable leaving the microphone -> its
picture shown) p50/p95, the first animated frame after the microphone started, and the frames shown of 25 per second
of voice. Only the syllables whose own frame was shown are measured (real-time pacing skips frames).
``--voice-query`` adds query options (e.g. ``drop_late_frames=false&sampling_steps=2``).

``--stack-cpus 1 --media-cpus 0``: the stack started here as the chart deploys it, the gateway in a pod of its own.
Triton and the orchestrator run on the first CPUs, the gateway and the peers (and the direct gRPC streams) on the
second, so the media codecs never take the renderer's cores. Both paths are measured on the same split.
"""
from __future__ import annotations

import argparse
import asyncio
import io
import os
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

import av
import numpy as np

from client.api import AsyncPortraitClient
from client.gateway.peer import WhipPeer, upload_portrait
from client.gateway.voice_peer import VoicePeer, syllables

from .live import LiveConfig, driving_frames, run_streams
from .report import new_report, write_json
from .scenarios import EXAMPLES
from .stats import percentiles_ms


def camera_frames(video: Path, count: int = 50) -> list[np.ndarray]:
    with av.open(str(video)) as container:
        return [frame.to_ndarray(format="rgb24") for _, frame in zip(range(count), container.decode(video=0))]


async def webrtc_level(gateway_url: str, portrait: str, frames: list[np.ndarray], peers: int, fps: float,
                       duration_s: float, api_key: str | None) -> dict:
    group = [WhipPeer(gateway_url, portrait, frames, fps, api_key, query=f"fps={fps:g}") for _ in range(peers)]
    for peer in group:  # not in step, as real cameras are not
        await peer.start()
        await asyncio.sleep(1.0 / fps / peers)
    started = time.monotonic()
    await asyncio.sleep(duration_s)
    wall = time.monotonic() - started
    for peer in group:
        await peer.close()
    matched = [m for peer in group for m in peer.matched()]
    latencies = [latency for latency, _ in matched]
    # what happens outside the gateway's stream: both media legs (encode, network, decode), and the gateway's
    # conversion of the answer
    media = [latency - stamp["gateway_ms"] / 1000 for latency, stamp in matched]
    server = [stamp["server_ms"] / 1000 for _, stamp in matched]  # the orchestrator's: arrival -> answer
    captured = sum(len(peer.camera.captured) for peer in group)
    shown = sum(len(peer.displayed) for peer in group)
    per_peer = [round(len(peer.displayed) / wall, 2) for peer in group]
    return {"path": "webrtc", "peers": peers, "captured": captured, "shown": shown, "matched": len(latencies),
            "drop_rate": round(1 - shown / captured, 4) if captured else None, "fps_per_peer": per_peer,
            "latency_ms": percentiles_ms(latencies), "media_ms": percentiles_ms(media),
            "server_ms": percentiles_ms(server)}


async def grpc_level(target: str, frames: list[bytes], peers: int, fps: float, duration_s: float,
                     api_key: str | None) -> dict:
    config = LiveConfig(target=target, fps=fps, duration_s=duration_s)
    async with AsyncPortraitClient(target, api_key=api_key) as client:
        stats, _, codes, wall, _ = await run_streams(client, config, frames, peers, duration_s)
    offered = sum(s.sent + s.client_dropped for s in stats)
    shown = sum(s.results - s.no_face for s in stats)
    return {"path": "grpc", "peers": peers, "captured": offered, "shown": shown,
            "drop_rate": round(1 - shown / offered, 4) if offered else None,
            "fps_per_peer": [round(s.achieved_fps, 2) for s in stats], "status": dict(codes),
            "latency_ms": percentiles_ms([v for s in stats for v in s.latencies]),
            "server_ms": percentiles_ms([v for s in stats for v in s.server_seconds])}


async def voice_level(gateway_url: str, portrait: str, peers: int, duration_s: float, api_key: str | None,
                      query: str = "") -> dict:
    samples, onsets = syllables(duration_s)
    group = [VoicePeer(gateway_url, portrait, samples, api_key, query) for _ in range(peers)]
    for peer in group:
        await peer.start()
    await asyncio.gather(*(peer.spoken() for peer in group))
    await asyncio.wait_for(asyncio.gather(*(peer.ended() for peer in group)), duration_s * 20 + 60)
    for peer in group:
        await peer.close()
    offsets = [v for peer in group for v in peer.av_offsets(onsets)]
    firsts = [peer.first_frame_s() for peer in group if peer.first_frame_s() is not None]
    frames = [peer.frames() for peer in group]
    pictured = sum(peer.shown_at(onset) is not None for peer in group for onset in onsets)
    return {"path": "voice", "peers": peers, "query": query, "syllables": len(onsets) * peers,
            "pictured": pictured, "heard_in_step": len(offsets), "av_offset_ms": percentiles_ms(offsets),
            "av_offset_max_ms": round(max((abs(v) for v in offsets), default=float("nan")) * 1000, 1),
            "voice_to_mouth_ms": percentiles_ms([v for peer in group for v in peer.voice_to_mouth(onsets)]),
            "first_frame_ms": [round(v * 1000) for v in firsts],
            "frames_shown": sum(map(len, frames)), "frames_of_voice": round(duration_s * 25) * peers,
            "clock_slipped_ms": [f[-1].get("slipped_ms") if f else None for f in frames]}


async def run_voice(target: str, gateway_url: str, levels: list[int], duration_s: float, api_key: str | None = None,
                    query: str = "", log=print) -> dict:
    source = EXAMPLES / "source" / "s0.jpg"
    portrait = await asyncio.to_thread(upload_portrait, gateway_url, source.read_bytes(), api_key)
    report = new_report("webrtc-voice", target=target, gateway=gateway_url, duration_s=duration_s, query=query)
    await voice_level(gateway_url, portrait, 1, 1.0, api_key, query)  # warm-up, not measured
    for peers in levels:
        record = await voice_level(gateway_url, portrait, peers, duration_s, api_key, query)
        report["levels"].append(record)
        log(f"  voice x{peers}: A/V offset p50 {record['av_offset_ms']['p50']} ms (largest "
            f"{record['av_offset_max_ms']} ms), {record['heard_in_step']} of {record['pictured']} syllables with their "
            f"frame shown heard in step ({record['syllables']} spoken); "
            f"first frame {record['first_frame_ms']} ms")
    return report


async def run_webrtc(target: str, gateway_url: str, levels: list[int], fps: float, duration_s: float,
                     api_key: str | None = None, log=print) -> dict:
    source, video = EXAMPLES / "source" / "s0.jpg", EXAMPLES / "driving" / "d0.mp4"
    rgb, jpeg = camera_frames(video), driving_frames(video, 50)
    portrait = await asyncio.to_thread(upload_portrait, gateway_url, source.read_bytes(), api_key)
    report = new_report("webrtc", target=target, gateway=gateway_url, fps=fps, duration_s=duration_s)
    await webrtc_level(gateway_url, portrait, rgb, 1, fps, 3.0, api_key)  # warm-up, not measured
    for peers in levels:
        for record in (await webrtc_level(gateway_url, portrait, rgb, peers, fps, duration_s, api_key),
                       await grpc_level(target, jpeg, peers, fps, duration_s, api_key)):
            report["levels"].append(record)
            lat = record["latency_ms"]
            log(f"  {record['path']} x{peers}: shown {record['shown']} of {record['captured']}, latency p50 "
                f"{lat['p50']} ms, p99 {lat['p99']} ms")
    return report


def cpu_list(text: str) -> set[int]:
    """``"0"``, ``"0-3"``, ``"0,2-3"`` -> a set of CPU numbers (as ``taskset -c`` reads them)."""
    cpus: set[int] = set()
    for part in filter(None, (p.strip() for p in text.split(","))):
        first, dash, last = part.partition("-")
        if not first.isdigit() or (dash and not last.isdigit()) or int(last or first) < int(first):
            raise ValueError(f"not a CPU list: {text!r} (e.g. 0, 0-3 or 0,2-3)")
        cpus.update(range(int(first), int(last or first) + 1))
    if not cpus:
        raise ValueError(f"not a CPU list: {text!r} (e.g. 0, 0-3 or 0,2-3)")
    return cpus


@contextmanager
def pinned(cpus: set[int] | None):
    """Run this thread, and the threads and processes it starts meanwhile, on ``cpus`` (None: unchanged)."""
    if cpus is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def run_local(levels: list[int], fps: float, duration_s: float, gateway_args: tuple[str, ...] = (),
              log=print, voice_query: str | None = None, stack_cpus: set[int] | None = None,
              media_cpus: set[int] | None = None) -> dict:
    """``run_webrtc`` (``run_voice`` with a ``voice_query``) against a tiny CPU stack and a gateway (with
    ``gateway_args``) started here (logs in build/load/webrtc). ``stack_cpus``: Triton and the orchestrator run
    there; ``media_cpus``: the gateway, the peers and the direct streams."""
    from client.gateway.process import GatewayProcess
    from orchestrator.embedded import OrchestratorProcess

    from .replicas import BUILD, tiny_cpu_repository, triton_replicas

    work = BUILD / "webrtc"
    room = str(max(levels))
    repository = (tiny_cpu_repository() if voice_query is None
                  else tiny_cpu_repository(BUILD / "repo-tiny-cpu-audio", audio=True))
    with ExitStack() as stack:
        with pinned(stack_cpus):
            triton, = stack.enter_context(triton_replicas(repository, 1, work))
            orchestrator = stack.enter_context(OrchestratorProcess(
                triton.grpc_url, work / "orchestrator.log", extra_args=("--live-max-streams", room)))
        stack.enter_context(pinned(media_cpus))
        gw = stack.enter_context(GatewayProcess(orchestrator.target, work / "gateway.log",
                                                extra_args=("--max-sessions", room, *gateway_args)))
        if voice_query is not None:
            report = asyncio.run(run_voice(orchestrator.target, gw.url, levels, duration_s, query=voice_query,
                                           log=log))
        else:
            report = asyncio.run(run_webrtc(orchestrator.target, gw.url, levels, fps, duration_s, log=log))
    report["gateway_args"] = list(gateway_args)
    report["stack_cpus"] = sorted(stack_cpus) if stack_cpus is not None else None
    report["media_cpus"] = sorted(media_cpus) if media_cpus is not None else None
    return report


def voice_table(report: dict) -> str:
    out = io.StringIO()
    out.write(f"{report['duration_s']:g} s of voice per peer, query {report['query'] or '(defaults)'!r}\n\n"
              "| peers | syllables spoken / frame shown / heard in step | A/V offset p50 / p95 ms | largest ms | "
              "voice -> mouth p50 / p95 ms | first frame ms | frames shown (of 25/s) |\n|---|---|---|---|---|---|---|\n")
    for r in report["levels"]:
        ms = (lambda v: "-" if v is None else f"{v:.0f}")
        av, vm = r["av_offset_ms"], r["voice_to_mouth_ms"]
        out.write(f"| {r['peers']} | {r['syllables']} / {r['pictured']} / {r['heard_in_step']} | "
                  f"{ms(av['p50'])} / {ms(av['p95'])} | {r['av_offset_max_ms']:.0f} | {ms(vm['p50'])} / "
                  f"{ms(vm['p95'])} | {', '.join(map(str, r['first_frame_ms']))} | "
                  f"{r['frames_shown']} of {r['frames_of_voice']} |\n")
    return out.getvalue()


def table(report: dict) -> str:
    out = io.StringIO()
    split = ("" if report.get("stack_cpus") is None else
             f"; Triton + orchestrator on CPUs {report['stack_cpus']}, gateway + peers on CPUs {report['media_cpus']}")
    out.write(f"{report['fps']:g} fps per peer, {report['duration_s']:g} s per level{split}\n\n"
              "| peers | path | captured | shown | drop rate | shown per s per peer | capture -> display p50 / p95 / "
              "p99 ms | of which media legs p50 / p95 ms | the orchestrator's p50 / p95 ms |\n"
              "|---|---|---|---|---|---|---|---|---|\n")

    def ms(values: dict | None, keys: tuple[str, ...]) -> str:
        return "-" if values is None else " / ".join("-" if values[k] is None else f"{values[k]:.0f}" for k in keys)

    for r in report["levels"]:
        fps = r["fps_per_peer"]
        out.write(f"| {r['peers']} | {r['path']} | {r['captured']} | {r['shown']} | {r['drop_rate']:.0%} | "
                  f"{sum(fps) / len(fps):.2f} | {ms(r['latency_ms'], ('p50', 'p95', 'p99'))} | "
                  f"{ms(r.get('media_ms'), ('p50', 'p95'))} | {ms(r.get('server_ms'), ('p50', 'p95'))} |\n")
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m load_tests.webrtc", description=__doc__.split("\n\n")[0])
    p.add_argument("--peers", default="1,4", help="levels: concurrent peers, e.g. 1,4,8")
    p.add_argument("--fps", type=float, default=10.0, help="camera frames per second per peer [10]")
    p.add_argument("--duration", type=float, default=20.0, help="seconds per level and path [20]")
    p.add_argument("--target", default=None, help="an orchestrator HOST:PORT (with --gateway); default: start a "
                                                  "tiny CPU stack here")
    p.add_argument("--gateway", default=None, help="the gateway's URL, e.g. http://127.0.0.1:8080")
    p.add_argument("--api-key", default=None)
    p.add_argument("--input-format", choices=["jpeg", "i420"], default="jpeg",
                   help="the started gateway's frames to the orchestrator [jpeg]")
    p.add_argument("--output-format", choices=["jpeg", "i420"], default="jpeg",
                   help="the started gateway's frames from the orchestrator [jpeg]")
    p.add_argument("--voice", action="store_true", help="the voice mode: peers speak, the voice comes back")
    p.add_argument("--voice-query", default="", help="voice mode query options, e.g. drop_late_frames=false")
    p.add_argument("--stack-cpus", default=None,
                   help="the started stack's Triton and orchestrator on these CPUs (e.g. 1 or 2-3; with --media-cpus)")
    p.add_argument("--media-cpus", default=None,
                   help="the started gateway, the peers and the direct streams on these CPUs (e.g. 0)")
    p.add_argument("--report", type=Path, default=None,
                   help="JSON; the table: .md [artifacts/load/webrtc.json, webrtc-voice.json with --voice]")
    args = p.parse_args(argv)
    levels = [int(v) for v in args.peers.split(",")]
    if bool(args.target) != bool(args.gateway):
        p.error("--target and --gateway go together")
    if (args.stack_cpus is None) != (args.media_cpus is None) or (args.target and args.stack_cpus):
        p.error("--stack-cpus and --media-cpus go together, for a stack started here (no --target)")
    split = {}
    if args.stack_cpus is not None:
        try:
            split = {"stack_cpus": cpu_list(args.stack_cpus), "media_cpus": cpu_list(args.media_cpus)}
        except ValueError as exc:
            p.error(str(exc))
        if split["stack_cpus"] & split["media_cpus"]:
            p.error("--stack-cpus and --media-cpus must not share a CPU")
        if not split["stack_cpus"] | split["media_cpus"] <= os.sched_getaffinity(0):
            p.error(f"this process may use CPUs {sorted(os.sched_getaffinity(0))} only")
    args.report = args.report or Path("artifacts/load/webrtc-voice.json" if args.voice else "artifacts/load/webrtc.json")
    if args.target and args.voice:
        report = asyncio.run(run_voice(args.target, args.gateway, levels, args.duration, args.api_key,
                                       args.voice_query))
    elif args.target:
        report = asyncio.run(run_webrtc(args.target, args.gateway, levels, args.fps, args.duration, args.api_key))
    else:
        formats = ("--input-format", args.input_format, "--output-format", args.output_format)
        report = run_local(levels, args.fps, args.duration, formats,
                           voice_query=args.voice_query if args.voice else None, **split)
    write_json(report, args.report)
    text = voice_table(report) if args.voice else table(report)
    args.report.with_suffix(".md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
