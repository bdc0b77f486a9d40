"""Scrape Prometheus text endpoints (Triton :8002/metrics, the orchestrator's metrics port) and turn counter deltas
into a server-side breakdown: per Triton model queue vs compute time per request and average batch size
(inference_count / exec_count); per orchestrator stage mean seconds; Triton call latency seen by the orchestrator.
"""
from __future__ import annotations

import re
import urllib.request
from dataclasses import dataclass

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Snapshot:
    """Every sample of one or more scrapes: {(sample name, sorted labels): value}; values of the same series from
    several endpoints (replicas) are summed."""

    samples: dict[tuple[str, Labels], float]

    def delta(self, earlier: "Snapshot") -> "Snapshot":
        return Snapshot({k: v - earlier.samples.get(k, 0.0) for k, v in self.samples.items()})

    def by(self, name: str, label: str) -> dict[str, float]:
        """Sum of ``name`` grouped by one label's value."""
        out: dict[str, float] = {}
        for (sample, labels), value in self.samples.items():
            if sample == name:
                key = dict(labels).get(label, "")
                out[key] = out.get(key, 0.0) + value
        return out


SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(text: str) -> Snapshot:
    """Text exposition format, sample names exactly as written (no ``_total`` added, unlike prometheus_client's
    parser, so Triton's ``nv_inference_count`` keeps its name)."""
    samples: dict[tuple[str, Labels], float] = {}
    for line in text.splitlines():
        match = SAMPLE.match(line.strip())
        if not match or line.startswith("#"):
            continue
        name, labels, value = match.groups()
        key = (name, tuple(sorted(LABEL.findall(labels or ""))))
        samples[key] = samples.get(key, 0.0) + float(value)
    return Snapshot(samples)


def scrape(url: str, timeout_s: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        return response.read().decode()


def scrape_all(urls: list[str]) -> Snapshot:
    """One snapshot summed over endpoints (empty when there are none)."""
    return parse("\n".join(scrape(u) for u in urls) + "\n") if urls else Snapshot({})


TRITON_COMPUTE = ("nv_inference_compute_input_duration_us", "nv_inference_compute_infer_duration_us",
                  "nv_inference_compute_output_duration_us")


def triton_breakdown(delta: Snapshot) -> dict[str, dict[str, float]]:
    """Per model with requests in the window: requests, inferences, executions, avg batch size, mean queue and
    compute ms per request. Ensembles are kept (requests only: their queue/compute are not meaningful)."""
    success = delta.by("nv_inference_request_success", "model")
    failures = delta.by("nv_inference_request_failure", "model")
    count = delta.by("nv_inference_count", "model")
    execs = delta.by("nv_inference_exec_count", "model")
    queue = delta.by("nv_inference_queue_duration_us", "model")
    compute = [delta.by(name, "model") for name in TRITON_COMPUTE]
    out = {}
    for model, n in sorted(success.items()):
        if n <= 0 and failures.get(model, 0) <= 0:
            continue
        per = max(n, 1.0)
        out[model] = {
            "requests": n,
            "failures": failures.get(model, 0.0),
            "inferences": count.get(model, 0.0),
            "executions": execs.get(model, 0.0),
            "avg_batch_size": round(count.get(model, 0.0) / execs[model], 3) if execs.get(model) else None,
            "queue_ms_per_request": round(queue.get(model, 0.0) / per / 1e3, 3),
            "compute_ms_per_request": round(sum(c.get(model, 0.0) for c in compute) / per / 1e3, 3),
        }
    return out


def _histogram_means(delta: Snapshot, name: str, label: str) -> dict[str, dict[str, float]]:
    sums = delta.by(f"{name}_sum", label)
    counts = delta.by(f"{name}_count", label)
    return {k: {"count": counts[k], "mean_ms": round(sums.get(k, 0.0) / counts[k] * 1e3, 3)}
            for k in sorted(counts) if counts[k] > 0}


def orchestrator_breakdown(delta: Snapshot) -> dict[str, object]:
    """Stage means, Triton call latency by model as seen by the orchestrator, frames rendered, RPCs by code."""
    requests = {}
    for (sample, labels), value in delta.samples.items():
        if sample == "liveportrait_requests_total" and value > 0:
            d = dict(labels)
            requests[f"{d.get('method', '')}:{d.get('code', '')}"] = value
    return {
        "requests": dict(sorted(requests.items())),
        "frames_rendered": sum(delta.by("liveportrait_frames_rendered_total", "").values()),
        "request_latency": _histogram_means(delta, "liveportrait_request_duration_seconds", "method"),
        "stages": _histogram_means(delta, "liveportrait_stage_duration_seconds", "stage"),
        "triton_calls": _histogram_means(delta, "liveportrait_triton_request_duration_seconds", "model"),
    }


@dataclass(frozen=True)
class ServerProbe:
    """Metrics endpoints to read around a level; either list may be empty."""

    triton_urls: tuple[str, ...] = ()
    orchestrator_urls: tuple[str, ...] = ()

    def snapshot(self) -> tuple[Snapshot, Snapshot]:
        return scrape_all(list(self.triton_urls)), scrape_all(list(self.orchestrator_urls))

    def breakdown(self, before: tuple[Snapshot, Snapshot]) -> dict[str, object]:
        triton_after, orch_after = self.snapshot()
        out: dict[str, object] = {}
        if self.triton_urls:
            out["triton"] = triton_breakdown(triton_after.delta(before[0]))
        if self.orchestrator_urls:
            out["orchestrator"] = orchestrator_breakdown(orch_after.delta(before[1]))
        return out
