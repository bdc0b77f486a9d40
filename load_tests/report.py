"""Reports: JSON (the full record), CSV (one row per level) and a plain-text table."""
from __future__ import annotations

import csv
import io
import json
import os
import platform
import time
from dataclasses import asdict
from pathlib import Path

from .stats import PERCENTILES, LevelStats


def machine() -> dict[str, object]:
    """Where the figures came from."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": model or platform.processor(), "cores": os.cpu_count(), "system": platform.platform(),
            "python": platform.python_version(), "gpu": None}


def level_record(label: str, load: dict[str, object], stats: LevelStats, server: dict | None = None) -> dict:
    record = {"level": label, **load, **asdict(stats)}
    if server:
        record["server"] = server
    return record


def new_report(kind: str, **meta) -> dict:
    return {"kind": kind, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine(), **meta,
            "levels": []}


def write_json(report: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, sort_keys=False) + "\n")


CSV_FIELDS = ["level", "mode", "concurrency", "rate_rps", "requests", "ok", "errors", "wall_s", "throughput_rps",
              "frames_per_s"] + [f"latency_p{p}_ms" for p in PERCENTILES] + \
             [f"first_result_p{p}_ms" for p in PERCENTILES]


def csv_rows(levels: list[dict]) -> list[dict]:
    rows = []
    for lv in levels:
        row = {k: lv.get(k) for k in CSV_FIELDS[:10]}
        row["errors"] = ";".join(f"{c}={n}" for c, n in lv["errors"].items())
        for p in PERCENTILES:
            row[f"latency_p{p}_ms"] = lv["latency_ms"][f"p{p}"]
            row[f"first_result_p{p}_ms"] = lv["first_result_ms"][f"p{p}"]
        rows.append(row)
    return rows


def write_csv(levels: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(csv_rows(levels))


def _num(value, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(levels: list[dict]) -> str:
    """One line per level: load, requests, throughput, latency percentiles, time to first result, errors."""
    head = (f"{'level':>7} {'req':>5} {'ok':>5} {'req/s':>7} {'frames/s':>8} {'p50 ms':>9} {'p90 ms':>9} "
            f"{'p95 ms':>9} {'p99 ms':>9} {'TTFR p50':>9} {'errors'}")
    out = io.StringIO()
    out.write(head + "\n")
    for lv in levels:
        lat, first = lv["latency_ms"], lv["first_result_ms"]
        errors = ", ".join(f"{c}={n}" for c, n in lv["errors"].items()) or "-"
        out.write(f"{lv['level']:>7} {lv['requests']:>5} {lv['ok']:>5} {lv['throughput_rps']:>7.3f} "
                  f"{lv['frames_per_s']:>8.2f} {_num(lat['p50']):>9} {_num(lat['p90']):>9} {_num(lat['p95']):>9} "
                  f"{_num(lat['p99']):>9} {_num(first['p50']):>9} {errors}\n")
    return out.getvalue()


def server_table(levels: list[dict]) -> str:
    """Per level and Triton model: avg batch size, queue and compute ms per request."""
    out = io.StringIO()
    for lv in levels:
        for model, m in lv.get("server", {}).get("triton", {}).items():
            if m.get("executions"):
                out.write(f"{lv['level']:>7} {model:<29} req={m['requests']:>6.0f} batch={_num(m['avg_batch_size'], 2):>5} "
                          f"queue={m['queue_ms_per_request']:>9.1f} ms compute={m['compute_ms_per_request']:>8.1f} ms\n")
    return out.getvalue()
