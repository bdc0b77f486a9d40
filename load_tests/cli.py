"""Sub-commands of ``python -m load_tests``: arguments and the function that runs each."""
from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from .engine import Bounds, ClosedLoop, OpenLoop
from .metrics import ServerProbe
from .report import server_table, table, write_csv, write_json
from .run import RunConfig, run_animate
from .scenarios import NAMES, Scenario


def csv_list(text: str, kind=int) -> tuple:
    return tuple(kind(x) for x in text.split(",") if x.strip())


def loads_from(args) -> tuple:
    closed = tuple(ClosedLoop(c) for c in csv_list(args.concurrency)) if args.concurrency else ()
    opened = tuple(OpenLoop(r, seed=i) for i, r in enumerate(csv_list(args.rates, float))) if args.rates else ()
    return closed + opened


def add_run(p: argparse.ArgumentParser) -> None:
    p.add_argument("--target", required=True, help="orchestrator gRPC target (host:port, dns:///name:port, ipv4:a,b)")
    p.add_argument("--scenario", choices=NAMES, default="template")
    p.add_argument("--frames", type=int, default=8, help="clip length of template/video scenarios")
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
        scenario=Scenario(args.scenario, frames=args.frames, timeout_s=args.timeout),
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


COMMANDS = {
    "run": (add_run, run_command),
}
