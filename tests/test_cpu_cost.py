"""The orchestrator CPU-cost benchmark (``python -m load_tests.cpu_cost``) on a few frames against the real
tritonserver, so that its code path (every stage, the table, the JSON report) cannot rot."""
from __future__ import annotations

import json

import pytest

from load_tests.cpu_cost import STAGES, main

pytestmark = pytest.mark.triton


def test_cpu_cost_measures_every_stage_and_derives_cores_per_gpu_replica(triton_server, tmp_path, capsys):
    report_path = tmp_path / "cpu_cost.json"
    assert main(["--frames", "4", "--repeats", "1", "--sizes", "512", "--gpu-fps", "100",
                 "--triton-url", triton_server.grpc_url, "--report", str(report_path)]) == 0
    report = json.loads(report_path.read_text())
    (row,) = report["sizes"]
    assert row["size"] == 512 and list(row["stages"]) == list(STAGES)
    for name, stage in row["stages"].items():
        assert stage["cpu_ms_per_frame"] > 0 and stage["wall_ms_per_frame"] > 0, name
    total = sum(s["cpu_ms_per_frame"] for s in row["stages"].values())
    assert row["total_cpu_ms_per_frame"] == pytest.approx(total)
    assert row["cores_at_1_fps"] == pytest.approx(total / 1000)
    assert row["cores_per_gpu_replica"] == pytest.approx(total / 1000 * 100)
    # Triton's inference is another process: the render call's client side costs far less CPU than its wall time
    assert row["stages"]["render"]["cpu_ms_per_frame"] < row["stages"]["render"]["wall_ms_per_frame"]
    table = capsys.readouterr().out
    for name in STAGES:
        assert f"| 512x512 | {name} |" in table
    assert "cores per GPU replica at 100 frames/s" in table
