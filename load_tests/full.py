"""``python -m load_tests all``: the full report on this machine: the three AnimatePortrait scenarios on the
embedded stack (one Triton replica + orchestrator), the batching study, the reference comparison and the scale-out
harness, written under one folder with a combined summary (summary.json, summary.md)."""
from __future__ import annotations

import asyncio
import io
import time
from dataclasses import dataclass
from pathlib import Path

from orchestrator.embedded import OrchestratorProcess

from .batching import BatchingConfig, batching_table, run_batching
from .engine import Bounds, ClosedLoop
from .metrics import ServerProbe
from .reference import ReferenceConfig, reference_table, run_reference
from .replicas import BUILD, tiny_cpu_repository, triton_replicas
from .report import machine, server_table, table, write_csv, write_json
from .run import RunConfig, run_animate
from .scaleout import ScaleOutConfig, run_scaleout, scaleout_table
from .scenarios import NAMES, Scenario


@dataclass(frozen=True)
class FullConfig:
    out: Path
    duration_s: float = 20.0
    concurrency: tuple[int, ...] = (1, 2, 4, 8)
    clip_frames: int = 8
    work_dir: Path = BUILD / "full"


def run_scenarios(repository: Path, config: FullConfig, log=print) -> dict[str, dict]:
    reports = {}
    with triton_replicas(repository, 1, config.work_dir / "logs") as (triton,), OrchestratorProcess(
            triton.grpc_url, config.work_dir / "logs" / "orchestrator.log",
            extra_args=("--max-concurrent", str(max(config.concurrency)), "--max-queued", "64")) as orchestrator:
        probe = ServerProbe((triton.metrics_url,), (orchestrator.metrics_url,))
        for name in NAMES:
            log(f"scenario {name}:")
            run = RunConfig(orchestrator.target, Scenario(name, frames=config.clip_frames),
                            tuple(ClosedLoop(c) for c in config.concurrency), Bounds(config.duration_s, drain_s=180),
                            probe)
            report = asyncio.run(run_animate(run, log))
            write_json(report, config.out / f"run-{name}.json")
            write_csv(report["levels"], config.out / f"run-{name}.csv")
            reports[name] = report
    return reports


def run_all(config: FullConfig, log=print) -> dict:
    started = time.monotonic()
    repository = tiny_cpu_repository()
    scenarios = run_scenarios(repository, config, log)
    batching = run_batching(BatchingConfig(concurrency=config.concurrency, duration_s=config.duration_s,
                                           repository=repository), log)
    write_json(batching, config.out / "batching.json")
    reference = run_reference(ReferenceConfig(repository=repository), log)
    write_json(reference, config.out / "reference.json")
    scaleout = run_scaleout(ScaleOutConfig(repository=repository), log)
    write_json(scaleout, config.out / "scaleout.json")
    summary = {"machine": machine(), "duration_s": round(time.monotonic() - started, 1),
               "scenarios": scenarios, "batching": batching, "reference": reference, "scaleout": scaleout}
    summary["summary_text"] = summary_text(summary)
    write_json(summary, config.out / "summary.json")
    (config.out / "summary.md").write_text(summary["summary_text"])
    return summary


def summary_from(out: Path) -> str:
    """summary.md again from the JSON reports in ``out`` (after re-running one part)."""
    import json

    load = lambda name: json.loads((out / name).read_text())  # noqa: E731
    parts = {"machine": machine(), "scenarios": {n: load(f"run-{n}.json") for n in NAMES},
             "batching": load("batching.json"), "reference": load("reference.json"),
             "scaleout": load("scaleout.json")}
    parts["duration_s"] = load("summary.json").get("duration_s", 0.0) if (out / "summary.json").exists() else 0.0
    text = summary_text(parts)
    (out / "summary.md").write_text(text)
    return text


def summary_text(s: dict) -> str:
    m = s["machine"]
    out = io.StringIO()
    out.write(f"# Load test report\n\nMachine: {m['cpu']}, {m['cores']} cores, no GPU; {m['system']}. "
              f"Tiny profile, synthetic weights, CPU Triton. Full run took {s['duration_s']:.0f} s.\n\n")
    for name, report in s["scenarios"].items():
        frames = "1 frame" if name == "image" else f"{report['clip_frames']}-frame clips"
        out.write(f"## AnimatePortrait, {name} scenario ({frames}, one Triton replica)\n\n"
                  f"```\n{table(report['levels'])}{server_table(report['levels'])}```\n\n")
    out.write(f"## Batching study (render_i420 straight to one Triton replica)\n\n```\n{batching_table(s['batching'])}"
              f"```\n\n")
    out.write(f"## Reference comparison and floor\n\n```\n{reference_table(s['reference'])}```\n\n")
    out.write(f"## Scale-out ({s['scaleout']['replicas']} replicas, Prometheus with the chart's rules)\n\n"
              f"```\n{scaleout_table(s['scaleout'])}```\n")
    return out.getvalue()
