"""Scale-out harness on one machine: N Triton replicas (tiny profile, CPU) behind one round_robin gRPC target, the
orchestrator pointed at all of them, and a real Prometheus scraping every replica and the orchestrator with the
chart's recording rules loaded. A load ramp of AnimatePortrait calls runs through the orchestrator; afterwards
Prometheus' HTTP API gives the per-replica share and the scaling signal over time, checked against the chart's
threshold (``triton.autoscaling.queueTimeTargetUs`` in helm/liveportrait/values.yaml)."""
from __future__ import annotations

import asyncio
import io
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from orchestrator.embedded import OrchestratorProcess

from .engine import Bounds, ClosedLoop, run_level
from .prometheus import PrometheusProcess, ScrapeTarget
from .replicas import BUILD, REPO_ROOT, tiny_cpu_repository, triton_replicas
from .report import new_report
from .scenarios import AnimateCall, Scenario, build_payload, open_channel
from .triton_load import replicas_target

CHART = REPO_ROOT / "helm" / "liveportrait"
SIGNAL = "liveportrait:triton_queue_us_per_request:rate1m"
PENDING = "liveportrait:triton_pending_requests:sum"
INFERENCES = "liveportrait:triton_inferences:rate1m"


@dataclass(frozen=True)
class Phase:
    concurrency: int  # 0: idle
    seconds: float


# The last idle phase ends early once the signal has fallen back (never before the 1 m rate window has passed).
DEFAULT_RAMP = (Phase(0, 10), Phase(1, 40), Phase(4, 40), Phase(8, 60), Phase(0, 120))


@dataclass(frozen=True)
class ScaleOutConfig:
    replicas: int = 2
    phases: tuple[Phase, ...] = DEFAULT_RAMP
    scenario: Scenario = field(default_factory=lambda: Scenario("template", frames=4))
    repository: Path | None = None
    work_dir: Path = BUILD / "scaleout"
    rules: Path = CHART / "files" / "prometheus-rules.yaml"
    values: Path = CHART / "values.yaml"
    spread_tolerance: float = 0.15  # largest relative deviation from an even share
    scrape_interval_s: float = 1.0
    trace_step_s: float = 2.0
    orchestrator_concurrency: int = 32


def chart_threshold_us(values: Path) -> float:
    return float(yaml.safe_load(values.read_text())["triton"]["autoscaling"]["queueTimeTargetUs"])


def rule_interval_s(rules: Path) -> float:
    """Evaluation interval of the group that records the scaling signal (Prometheus duration, e.g. "15s")."""
    for group in yaml.safe_load(rules.read_text())["groups"]:
        if any(r.get("record") == SIGNAL for r in group["rules"]):
            return duration_s(group.get("interval", "1m"))
    raise ValueError(f"{rules}: no rule records {SIGNAL}")


def duration_s(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    for unit in ("ms", "s", "m", "h"):
        if text.endswith(unit) and text[:-len(unit)].isdigit():
            return int(text[:-len(unit)]) * units[unit]
    raise ValueError(f"unsupported Prometheus duration {text!r}")


def spread(counts: dict[str, float], tolerance: float) -> dict:
    """Shares per pod and the largest relative deviation from 1/N; even when it is within ``tolerance``."""
    total = sum(counts.values())
    if not counts or total <= 0:
        return {"counts": counts, "shares": {}, "max_deviation": None, "even": False}
    even = 1.0 / len(counts)
    shares = {pod: n / total for pod, n in sorted(counts.items())}
    deviation = max(abs(s - even) / even for s in shares.values())
    return {"counts": counts, "shares": {p: round(s, 4) for p, s in shares.items()},
            "max_deviation": round(deviation, 4), "even": deviation <= tolerance}


def by_pod(result: list[dict]) -> dict[str, float]:
    return {r["metric"].get("pod", ""): float(r["value"][1]) for r in result}


def trace(result: list[dict]) -> list[tuple[float, dict[str, float]]]:
    """query_range result -> [(unix time, {pod: value})] sorted by time."""
    points: dict[float, dict[str, float]] = {}
    for series in result:
        pod = series["metric"].get("pod", "")
        for t, v in series["values"]:
            points.setdefault(float(t), {})[pod] = float(v)
    return sorted(points.items())


def running(windows: list[dict], i: int, t: float) -> bool:
    """Phase i runs at time t; the last phase runs on until the trace ends."""
    w = windows[i]
    return w["start"] <= t and (i == len(windows) - 1 or t <= w["end"])


def credited(windows: list[dict], i: int, t: float, lag_s: float) -> bool:
    """Whether a value recorded at time t describes phase i: it runs at t, or it is a loaded phase that ended at most
    ``lag_s`` before t and an idle phase runs at t. The rule is evaluated once per rule interval on samples scraped
    once per scrape interval, so what is recorded just after the load stopped still describes the load (an idle phase
    cannot drive the signal up); the value then counts for both phases."""
    if running(windows, i, t):
        return True
    w = windows[i]
    now_idle = any(running(windows, j, t) and windows[j]["concurrency"] == 0 for j in range(len(windows)))
    return w["concurrency"] > 0 and w["end"] < t <= w["end"] + lag_s and now_idle


def phase_summary(signal: list[tuple[float, dict[str, float]]], pending: list[tuple[float, dict[str, float]]],
                  windows: list[dict], threshold: float, lag_s: float = 0.0) -> list[dict]:
    """Per phase: the highest and mean per-pod signal, highest pending count, whether it crossed the threshold."""
    rows = []
    for i, w in enumerate(windows):
        inside = [max(v.values()) for t, v in signal if v and credited(windows, i, t, lag_s)]
        waiting = [sum(v.values()) for t, v in pending if v and credited(windows, i, t, lag_s)]
        rows.append({"phase": w["phase"], "concurrency": w["concurrency"],
                     "signal_max_us": round(max(inside), 1) if inside else None,
                     "signal_mean_us": round(sum(inside) / len(inside), 1) if inside else None,
                     "signal_end_us": round(inside[-1], 1) if inside else None,
                     "pending_max": max(waiting) if waiting else None,
                     "above_threshold": bool(inside) and max(inside) > threshold})
    return rows


def reaction(signal: list[tuple[float, dict[str, float]]], windows: list[dict], threshold: float,
             lag_s: float = 0.0) -> dict:
    """Seconds from the start of the loaded phase that drove the signal above the threshold (see ``credited``) to the
    first point above it, and from the end of the load to the first point back below it (None when it never
    happened)."""
    loaded = [w for w in windows if w["concurrency"] > 0]
    if not loaded:
        return {"up_phase": None, "up_s": None, "down_s": None}
    load_end = loaded[-1]["end"]
    above = [t for t, v in signal if t >= loaded[0]["start"] and v and max(v.values()) > threshold]
    below = [t for t, v in signal if above and t >= max(load_end, above[0]) and v and max(v.values()) < threshold]
    phase = next((w for i, w in enumerate(windows)
                  if above and w["concurrency"] > 0 and credited(windows, i, above[0], lag_s)), None)
    return {"up_phase": phase["phase"] if phase else None,
            "up_s": round(above[0] - phase["start"], 1) if phase else None,
            "down_s": round(below[0] - load_end, 1) if below else None}


def verdict(summary: list[dict], spreads: dict, threshold: float) -> dict[str, bool]:
    loaded = [s for s in summary if s["concurrency"] > 0]
    last = summary[-1]
    return {
        "spread_even": all(s["even"] for s in spreads.values()),
        "signal_crosses_threshold_under_load": any((s["signal_max_us"] or 0) > threshold for s in loaded),
        "signal_falls_back_at_idle": last["concurrency"] == 0 and last["signal_end_us"] is not None
        and last["signal_end_us"] < threshold,
    }


RATE_WINDOW_S = 60.0  # the chart's rules use rate(...[1m])


def signal_fallen(prom: PrometheusProcess, threshold: float) -> bool:
    """Every pod's recorded scaling signal is below the threshold now."""
    values = by_pod(prom.query(SIGNAL))
    return bool(values) and max(values.values()) < threshold


async def idle(seconds: float, after_load: bool, fallen) -> None:
    """Sleep ``seconds``; after a loaded phase, end early once ``fallen()`` holds, but never before the rate window
    has passed (the signal cannot have fallen earlier)."""
    started = time.monotonic()
    while (left := seconds - (time.monotonic() - started)) > 0:
        await asyncio.sleep(min(left, 2.0))
        if after_load and time.monotonic() - started >= RATE_WINDOW_S and await asyncio.to_thread(fallen):
            return


async def run_ramp(target: str, config: ScaleOutConfig, fallen, log=print) -> list[dict]:
    payload = build_payload(config.scenario)
    windows = []
    async with open_channel(target) as channel:
        call = AnimateCall(channel, payload, config.scenario.timeout_s)
        for i, phase in enumerate(config.phases):
            start = time.time()
            if phase.concurrency == 0:
                await idle(phase.seconds, bool(windows) and windows[-1]["concurrency"] > 0, fallen)
                stats = None
            else:
                stats, _ = await run_level(call, ClosedLoop(phase.concurrency), Bounds(phase.seconds, drain_s=60))
            window = {"phase": i, "concurrency": phase.concurrency, "start": start, "end": time.time(),
                      "stats": asdict(stats) if stats else None}
            windows.append(window)
            log(f"  phase {i}: concurrency {phase.concurrency} for {window['end'] - start:.0f} s"
                + (f", {stats.ok} ok, {stats.throughput_rps:.2f} req/s, errors {stats.errors or '-'}" if stats else ""))
    return windows


def read_prometheus(prom: PrometheusProcess, windows: list[dict], config: ScaleOutConfig, threshold: float) -> dict:
    start, end = windows[0]["start"], time.time()  # the trace runs to now: the last idle phase may just have ended
    loaded = [w for w in windows if w["concurrency"] > 0]
    span = f"{int(loaded[-1]['end'] - loaded[0]['start']) + 5}s"
    at = loaded[-1]["end"] + 3
    requests = by_pod(prom.query(f'sum by (pod) (increase(nv_inference_request_success{{job="triton"}}[{span}]))', at))
    frames = by_pod(prom.query(
        f'sum by (pod) (increase(nv_inference_count{{job="triton",model="warping_spade"}}[{span}]))', at))
    spreads = {"requests": spread(requests, config.spread_tolerance),
               "frames": spread(frames, config.spread_tolerance)}
    signal = trace(prom.query_range(SIGNAL, start, end, config.trace_step_s))
    pending = trace(prom.query_range(PENDING, start, end, config.trace_step_s))
    inferences = trace(prom.query_range(INFERENCES, start, end, config.trace_step_s))
    lag = rule_interval_s(config.rules) + config.scrape_interval_s
    summary = phase_summary(signal, pending, windows, threshold, lag)
    return {
        "threshold_us": threshold,
        "evaluation_lag_s": lag,
        "spread": spreads,
        "phases": summary,
        "verdict": verdict(summary, spreads, threshold),
        "reaction": reaction(signal, windows, threshold, lag),
        "trace": {"t0": start, "step_s": config.trace_step_s,
                  "signal_us": [[round(t - start, 1), v] for t, v in signal],
                  "pending": [[round(t - start, 1), v] for t, v in pending],
                  "inferences_per_s": [[round(t - start, 1), v] for t, v in inferences]},
        "rules_loaded": [r["name"] for g in prom.rule_groups() for r in g["rules"]],
    }


def run_scaleout(config: ScaleOutConfig, log=print) -> dict:
    repository = config.repository or tiny_cpu_repository()
    threshold = chart_threshold_us(config.values)
    report = new_report("scaleout", replicas=config.replicas, scenario=config.scenario.name,
                        clip_frames=config.scenario.frames, phases=[asdict(p) for p in config.phases])
    with ExitStack() as stack:
        servers = stack.enter_context(triton_replicas(repository, config.replicas, config.work_dir / "logs"))
        target = replicas_target([s.grpc_url for s in servers])
        orchestrator = stack.enter_context(OrchestratorProcess(
            target, config.work_dir / "logs" / "orchestrator.log",
            extra_args=("--max-concurrent", str(config.orchestrator_concurrency), "--max-queued", "64")))
        targets = [ScrapeTarget("triton", f"127.0.0.1:{s.ports.metrics}", f"triton-{i}") for i, s in enumerate(servers)]
        targets.append(ScrapeTarget("orchestrator", f"127.0.0.1:{orchestrator.metrics_port}", "orchestrator-0"))
        prom = stack.enter_context(PrometheusProcess(targets, [config.rules], config.work_dir / "prometheus",
                                                     config.scrape_interval_s))
        prom.wait_for_targets()
        log(f"{config.replicas} Triton replicas behind {target}; orchestrator {orchestrator.target}; "
            f"Prometheus {prom.url}")
        windows = asyncio.run(run_ramp(orchestrator.target, config, lambda: signal_fallen(prom, threshold), log))
        time.sleep(2 * config.scrape_interval_s)
        report["triton_target"] = target
        report["windows"] = windows
        report.update(read_prometheus(prom, windows, config, threshold))
    log(scaleout_table(report))
    return report


def scaleout_table(report: dict) -> str:
    out = io.StringIO()
    out.write(f"threshold {report['threshold_us']:.0f} us (chart values.yaml queueTimeTargetUs); a value recorded "
              f"up to {report['evaluation_lag_s']:.0f} s after a phase ended still counts for it (rule + scrape "
              f"interval)\n")
    for name, s in report["spread"].items():
        out.write(f"  share of {name:<8}: {s['shares']} max deviation {s['max_deviation']} "
                  f"({'even' if s['even'] else 'UNEVEN'})\n")
    out.write(f"  {'phase':>5} {'conc':>4} {'signal max us':>14} {'mean us':>10} {'end us':>10} {'pending max':>11}\n")
    for p in report["phases"]:
        out.write(f"  {p['phase']:>5} {p['concurrency']:>4} {_n(p['signal_max_us']):>14} {_n(p['signal_mean_us']):>10} "
                  f"{_n(p['signal_end_us']):>10} {_n(p['pending_max']):>11}\n")
    r = report["reaction"]
    out.write(f"  signal above threshold {r['up_s']} s into phase {r['up_phase']}; back below {r['down_s']} s "
              f"after the load stopped (1 m rate window)\n")
    out.write(f"  verdict: {report['verdict']}\n")
    return out.getvalue()


def _n(value) -> str:
    return "-" if value is None else f"{value:.0f}"
