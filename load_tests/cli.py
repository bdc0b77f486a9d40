"""Sub-commands of ``python -m load_tests``: arguments and the function that runs each."""
from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from .engine import Bounds, ClosedLoop, OpenLoop
from .metrics import ServerProbe
from .report import server_table, table, write_csv, write_json
from .run import RunConfig, run_animate
from .scenarios import ALL_NAMES, Scenario

# `run` needs only the orchestrator's runtime dependencies (it runs in the orchestrator image, in a cluster); the
# other commands import torch, pyyaml and the Triton launcher, so they are imported when they run.


def csv_list(text: str, kind=int) -> tuple:
    return tuple(kind(x) for x in text.split(",") if x.strip())


def loads_from(args) -> tuple:
    closed = tuple(ClosedLoop(c) for c in csv_list(args.concurrency)) if args.concurrency else ()
    opened = tuple(OpenLoop(r, seed=i) for i, r in enumerate(csv_list(args.rates, float))) if args.rates else ()
    return closed + opened


def add_run(p: argparse.ArgumentParser) -> None:
    p.add_argument("--target", required=True, help="orchestrator gRPC target (host:port, dns:///name:port, ipv4:a,b)")
    p.add_argument("--scenario", choices=ALL_NAMES, default="template",
                   help="audio: a voice drives the portrait (the server needs liveportrait-export --audio)")
    p.add_argument("--frames", type=int, default=8,
                   help="clip length of template/video scenarios, and of the audio scenario's generated voice "
                        "(frames / 25 seconds)")
    defaults = Scenario("template")
    p.add_argument("--source", type=Path, default=defaults.source, help="source portrait")
    p.add_argument("--template", type=Path, default=defaults.template, help="template scenario: .pkl/.pb/.json")
    p.add_argument("--video", type=Path, default=defaults.video, help="video scenario: driving video")
    p.add_argument("--image", type=Path, default=defaults.image, help="image scenario: driving image")
    p.add_argument("--audio", type=Path, default=None,
                   help="audio scenario: a sound file (default: a generated tone sweep of --frames / 25 s)")
    p.add_argument("--audio-steps", type=int, default=None,
                   help="audio scenario: DDIM sampling steps per window (default: the service's, 50)")
    p.add_argument("--low-latency", action="store_true",
                   help="ask for output.low_latency (frames stream while later chunks render)")
    p.add_argument("--concurrency", default="1,2,4", help="closed-loop levels, e.g. 1,2,4 ('' for none)")
    p.add_argument("--rates", default="", help="open-loop Poisson levels in requests/s, e.g. 0.2,0.5")
    p.add_argument("--duration", type=float, default=30.0, help="seconds per level (new calls stop after it)")
    p.add_argument("--max-requests", type=int, default=10_000, help="calls per level at most")
    p.add_argument("--drain", type=float, default=120.0, help="seconds running calls may finish after a level")
    p.add_argument("--timeout", type=float, default=300.0, help="deadline of one call (s)")
    p.add_argument("--warmup", type=int, default=1, help="calls before the first level")
    p.add_argument("--triton-metrics", default="", help="Triton metrics URLs, comma-separated (breakdown)")
    p.add_argument("--orchestrator-metrics", default="", help="orchestrator metrics URLs, comma-separated")
    p.add_argument("--report", type=Path, default=Path("artifacts/load/run.json"))
    p.add_argument("--csv", type=Path, default=None, help="default: the report path with .csv")


def run_command(args) -> int:
    """closed-loop / open-loop AnimatePortrait levels against a target; JSON + CSV report and a table"""
    config = RunConfig(
        target=args.target,
        scenario=Scenario(args.scenario, frames=args.frames, source=args.source, template=args.template,
                          video=args.video, image=args.image, timeout_s=args.timeout, low_latency=args.low_latency,
                          audio=args.audio, audio_steps=args.audio_steps),
        loads=loads_from(args),
        bounds=Bounds(args.duration, args.max_requests, args.drain),
        probe=ServerProbe(csv_list(args.triton_metrics, str), csv_list(args.orchestrator_metrics, str)),
        warmup_calls=args.warmup,
    )
    report = asyncio.run(run_animate(config))
    write_json(report, args.report)
    write_csv(report["levels"], args.csv or args.report.with_suffix(".csv"))
    print(table(report["levels"]) + server_table(report["levels"]))
    print(f"report: {args.report}")
    return 0


def add_batching(p: argparse.ArgumentParser) -> None:
    p.add_argument("--concurrency", default="1,2,4,8")
    p.add_argument("--duration", type=float, default=20.0, help="seconds per level and mode")
    p.add_argument("--report", type=Path, default=Path("artifacts/load/batching.json"))


def batching_command(args) -> int:
    """throughput and latency vs concurrency with Triton dynamic batching on and off (render_i420, one replica)"""
    from .batching import BatchingConfig, batching_table, run_batching

    config = BatchingConfig(concurrency=csv_list(args.concurrency), duration_s=args.duration)
    report = run_batching(config)
    write_json(report, args.report)
    print(batching_table(report))
    return 0


def add_reference(p: argparse.ArgumentParser) -> None:
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--report", type=Path, default=Path("artifacts/load/reference.json"))


def reference_command(args) -> int:
    """per-frame time: served (Triton) vs PyTorch eager in-process, and the FLOP floor of this machine"""
    from .reference import ReferenceConfig, run_reference

    report = run_reference(ReferenceConfig(repeats=args.repeats))
    write_json(report, args.report)
    return 0


def add_scaleout(p: argparse.ArgumentParser) -> None:
    p.add_argument("--replicas", type=int, default=2)
    p.add_argument("--ramp", default=DEFAULT_RAMP_TEXT,
                   help="phases CONCURRENCY:SECONDS, comma-separated (0 = idle)")
    p.add_argument("--frames", type=int, default=4, help="clip length of the template calls")
    p.add_argument("--report", type=Path, default=Path("artifacts/load/scaleout.json"))


DEFAULT_RAMP_TEXT = "0:10,1:40,4:40,8:60,0:120"  # scaleout.DEFAULT_RAMP (not imported: it needs pyyaml)


def ramp_text(phases) -> str:
    return ",".join(f"{p.concurrency}:{p.seconds:g}" for p in phases)


def parse_ramp(text: str) -> tuple:
    from .scaleout import Phase

    return tuple(Phase(int(c), float(s)) for c, s in (item.split(":") for item in text.split(",")))


def scaleout_command(args) -> int:
    """N Triton replicas + orchestrator + Prometheus with the chart's rules; replica spread and scaling signal"""
    from .scaleout import ScaleOutConfig, run_scaleout

    config = ScaleOutConfig(replicas=args.replicas, phases=parse_ramp(args.ramp),
                            scenario=Scenario("template", frames=args.frames))
    report = run_scaleout(config)
    write_json(report, args.report)
    return 0 if all(report["verdict"].values()) else 1


def add_all(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=Path("artifacts/load"))
    p.add_argument("--duration", type=float, default=20.0, help="seconds per level")
    p.add_argument("--concurrency", default="1,2,4,8")


def all_command(args) -> int:
    """everything on the embedded stack: scenarios, batching study, reference comparison, scale-out; one summary"""
    from .full import FullConfig, run_all

    report = run_all(FullConfig(out=args.out, duration_s=args.duration, concurrency=csv_list(args.concurrency)))
    print(report["summary_text"])
    return 0 if all(report["scaleout"]["verdict"].values()) else 1


def add_live(p: argparse.ArgumentParser) -> None:
    p.add_argument("--target", default="", help="orchestrator gRPC target; default: start the tiny CPU stack here")
    p.add_argument("--streams", default="1,2,4,8", help="levels: concurrent live streams, e.g. 1,2,4,8")
    p.add_argument("--fps", type=float, default=10.0, help="frames sent per second by each stream")
    p.add_argument("--duration", type=float, default=20.0, help="seconds of sending per level")
    defaults = Scenario("video")
    p.add_argument("--source", type=Path, default=defaults.source, help="source portrait")
    p.add_argument("--video", type=Path, default=defaults.video, help="driving video, replayed in a loop")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds of one stream before the first level")
    p.add_argument("--triton-metrics", default="", help="with --target: Triton metrics URLs (render batch size)")
    p.add_argument("--orchestrator-metrics", default="", help="with --target: orchestrator metrics URLs")
    p.add_argument("--report", type=Path, default=Path("artifacts/load/live.json"), help="JSON; the table: .md")


def live_command(args) -> int:
    """N concurrent AnimateStream streams at a frame rate: latency percentiles, fps per stream, drops, render batch"""
    from .live import LiveConfig, live_table, run_live, run_live_local

    config = LiveConfig(target=args.target, streams=csv_list(args.streams), fps=args.fps, duration_s=args.duration,
                        source=args.source, video=args.video, warmup_s=args.warmup,
                        probe=ServerProbe(csv_list(args.triton_metrics, str), csv_list(args.orchestrator_metrics, str)))
    if args.target:
        report = asyncio.run(run_live(config))
    else:
        report = run_live_local(config)
    write_json(report, args.report)
    text = live_table(report)
    args.report.with_suffix(".md").write_text(text)
    print(text + f"report: {args.report}")
    return 0


def add_summary(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=Path("artifacts/load"))


def summary_command(args) -> int:
    """summary.md again from the JSON reports of `all` (e.g. after re-running scaleout into the same folder)"""
    from .full import summary_from

    print(summary_from(args.out))
    return 0


COMMANDS = {
    "run": (add_run, run_command),
    "batching": (add_batching, batching_command),
    "reference": (add_reference, reference_command),
    "scaleout": (add_scaleout, scaleout_command),
    "all": (add_all, all_command),
    "summary": (add_summary, summary_command),
    "live": (add_live, live_command),
}
