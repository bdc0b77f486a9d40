"""`liveportrait up`: one command starts the real tritonserver and the orchestrator, and Ctrl-C stops both."""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator.child_process import http_ok
from orchestrator.triton_process import free_port

pytestmark = pytest.mark.triton
REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = REPO_ROOT.parent / "shared" / "examples"


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def read_until(process: subprocess.Popen, pattern: str, timeout_s: float) -> tuple[re.Match, str]:
    deadline = time.monotonic() + timeout_s
    seen = ""
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        seen += line
        match = re.search(pattern, seen)
        if match:
            return match, seen
    pytest.fail(f"no {pattern!r} within {timeout_s:.0f} s; output:\n{seen}")


def test_up_serves_until_ctrl_c_then_stops_triton_and_the_orchestrator(tmp_path):
    port = free_port()
    busy = socket.socket()  # the metrics port is taken (another `liveportrait up`): a free one is chosen and printed
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    metrics_port = busy.getsockname()[1]
    cli = [sys.executable, "-m", "client.cli"]
    web_port = free_port()  # and the web page beside the stack (`up --web`), stopped with it
    process = subprocess.Popen([*cli, "up", "--port", str(port), "--metrics-port", str(metrics_port), "--web",
                                "--web-port", str(web_port), "--animal"], cwd=REPO_ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        chosen, _ = read_until(process, rf"the metrics port {metrics_port} is in use; serving the orchestrator's "
                                        r"metrics on port (\d+) instead", 60)
        triton, _ = read_until(process, r"tritonserver ready on 127\.0\.0\.1:(\d+)", 300)
        _, output = read_until(process, r"ready: liveportrait animate --server \S+", 120)
        assert "synthetic weights" in output
        web, _ = read_until(process, r"web page: (http://\S+)", 30)
        assert web.group(1) == f"http://127.0.0.1:{web_port}/" and http_ok(web.group(1))
        health = subprocess.run([*cli, "health", "--server", f"127.0.0.1:{port}"], capture_output=True, text=True,
                                timeout=60, cwd=REPO_ROOT)
        assert health.returncode == 0 and "SERVING" in health.stdout
        animal = subprocess.run([*cli, "animate", "--server", f"127.0.0.1:{port}", "--source",
                                 str(EXAMPLES / "source" / "s9.jpg"), "--driving", str(EXAMPLES / "driving" / "d9.jpg"),
                                 "--model-set", "animal", "--no-crop-source", "-o", str(tmp_path / "animal.mp4")],
                                capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
        assert animal.returncode == 0, animal.stdout + animal.stderr  # `up --animal` serves the animal models too
        triton_port = int(triton.group(1))
        assert port_open(port) and port_open(triton_port) and port_open(int(chosen.group(1)))
        process.send_signal(signal.SIGINT)
        _, output = read_until(process, r"stopped", 60)
        assert process.wait(30) == 0
        assert not port_open(port), "the orchestrator is stopped"
        assert not port_open(triton_port), "tritonserver is stopped"
        assert not port_open(web_port), "the web page is stopped"
        assert "Traceback" not in output
    finally:
        busy.close()
        if process.poll() is None:
            process.kill()


def test_up_with_the_official_face_stack_but_no_files_says_what_is_missing():
    cli = [sys.executable, "-m", "client.cli"]
    result = subprocess.run([*cli, "up", "--face-stack", "official", "--port", str(free_port())], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 2
    assert "det_10g.onnx" in result.stderr and "Traceback" not in result.stderr
