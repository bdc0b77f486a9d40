"""EditPortrait latency: the first edit of a source (decode, detection, crop, motion extraction) vs the later edits
of the same session (keypoints, retargeting/stitching MLPs, render, paste-back, PNG).

    python -m load_tests.edit_latency --server HOST:PORT [--source IMAGE] [--edits 20]
    python -m load_tests.edit_latency --repository build/test/repo-tiny-cpu   # starts Triton + orchestrator
"""
from __future__ import annotations

import argparse
import contextlib
import json
import time
from pathlib import Path

import numpy as np

from client.api import PortraitClient

EXAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "examples" / "source" / "s0.jpg"


def measure(target: str, source: Path, edits: int = 20) -> dict:
    data = source.read_bytes()
    with PortraitClient(target) as client:
        client.edit(EXAMPLE.with_name("s1.jpg").read_bytes(), {})  # warm the channel and the models
        started = time.perf_counter()
        first = client.edit(data, {"smile": 0.5})
        first_s = time.perf_counter() - started
        later, server = [], []
        for i in range(edits):
            edit = {"smile": float(np.sin(i) * 0.6 + 0.5), "head_yaw": float(10 * np.cos(i)), "eye_ratio": 0.35}
            started = time.perf_counter()
            result = client.edit(None, edit, session_id=first.session_id)
            later.append(time.perf_counter() - started)
            server.append(result.seconds)
            assert result.session_reused
    return {"source": source.name, "size": [first.width, first.height], "first_ms": round(first_s * 1000, 1),
            "first_stages_ms": {k: round(v * 1000, 1) for k, v in first.timings.items()},
            "later_p50_ms": round(float(np.median(later)) * 1000, 1),
            "later_p90_ms": round(float(np.percentile(later, 90)) * 1000, 1),
            "later_server_p50_ms": round(float(np.median(server)) * 1000, 1),
            "later_stages_ms": {k: round(v * 1000, 1) for k, v in result.timings.items()}, "edits": edits}


@contextlib.contextmanager
def local_stack(repository: Path, logs: Path):
    from orchestrator.embedded import OrchestratorProcess
    from orchestrator.triton_process import TritonProcess

    triton = TritonProcess(repository, log_file=logs / "tritonserver-edit-latency.log")
    triton.start()
    try:
        with OrchestratorProcess(triton.grpc_url, logs / "orchestrator-edit-latency.log") as orchestrator:
            yield orchestrator.target
    finally:
        triton.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m load_tests.edit_latency", description=__doc__.split("\n\n")[0])
    p.add_argument("--server", default=None)
    p.add_argument("--repository", type=Path, default=None, help="serve this model repository locally")
    p.add_argument("--source", type=Path, default=EXAMPLE)
    p.add_argument("--edits", type=int, default=20)
    a = p.parse_args(argv)
    if a.server:
        report = measure(a.server, a.source, a.edits)
    else:
        with local_stack(a.repository, Path("build/test")) as target:
            report = measure(target, a.source, a.edits)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
