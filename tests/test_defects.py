"""Regression tests of issue 13's defects 3-9 that need no Triton (the served ones are in
test_orchestrator_errors.py, the CLI ones in test_client_templates.py)."""
from __future__ import annotations

import io
import logging
import socket
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from client.demo_motion import demo_template
from orchestrator.templates import InvalidTemplateError, from_proto

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = REPO_ROOT.parent / "shared" / "examples"


# ---- defect 5: non-finite eye/lip ratios in a template ------------------------------------------------------------

@pytest.mark.parametrize("field, value", [("eye_ratio", float("nan")), ("eye_ratio", float("inf")),
                                          ("lip_ratio", float("nan")), ("lip_ratio", float("-inf")),
                                          ("exp", float("nan")), ("t", float("inf"))])
def test_non_finite_template_values_are_refused_with_field_and_frame(field, value):
    message = demo_template(frames=5, fps=Fraction(25))
    frame = message.frames[3]
    if field == "lip_ratio":
        frame.lip_ratio = value
    else:
        getattr(frame, field)[1] = value
    with pytest.raises(InvalidTemplateError, match=f"frame 3: {field} holds a non-finite value"):
        from_proto(message)
    from_proto(demo_template(frames=5, fps=Fraction(25)))  # the same template, finite, is accepted


# ---- defects 6 and 7: no server path and no raw FFmpeg text in messages; the raw text is logged ------------------

def test_video_errors_carry_no_path_and_no_library_text(tmp_path, caplog):
    from orchestrator.media import InvalidVideoError, probe, read_frames

    garbage = tmp_path / "driving-abc123.bin"
    garbage.write_bytes(b"garbage" * 1000)
    with caplog.at_level(logging.INFO, logger="liveportrait.orchestrator.media"):
        with pytest.raises(InvalidVideoError) as error:
            probe(garbage)
    assert str(error.value).startswith("the driving video cannot be read")
    assert str(tmp_path) not in str(error.value) and "Errno" not in str(error.value)
    assert "Errno" in caplog.text  # the raw reason stays in the server log

    data = bytearray((EXAMPLES / "driving" / "d0.mp4").read_bytes())
    a = len(data) // 10
    data[a:a + 200_000] = (np.frombuffer(bytes(data[a:a + 200_000]), np.uint8) ^ 0x5A).tobytes()
    corrupt = tmp_path / "driving-def456.bin"
    corrupt.write_bytes(bytes(data))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="liveportrait.orchestrator.media"):
        with pytest.raises(InvalidVideoError) as error:
            for _ in read_frames(corrupt, 8, 1000):
                pass
    message = str(error.value)
    assert message.startswith("the driving video could not be decoded (corrupt or unsupported H.264 stream at frame ")
    for internal in ("Errno", "avcodec", str(tmp_path), "driving-def456"):
        assert internal not in message
    assert "avcodec_send_packet" in caplog.text


# ---- defect 8: alpha is dropped like the official reader (see also test_face_decode.py) -------------------------

def test_png_alpha_keeps_the_colour_channels():
    from orchestrator.face import decode_image

    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[..., :3], rgba[..., 3] = (200, 40, 60), 0
    buffer = io.BytesIO()
    Image.fromarray(rgba).save(buffer, "PNG")
    assert (decode_image(buffer.getvalue()) == (200, 40, 60)).all()


# ---- defect 9: busy ports --------------------------------------------------------------------------------------

@pytest.fixture
def busy_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def orchestrator(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "orchestrator.server", "--address", "127.0.0.1", "--triton-url",
                           "127.0.0.1:1", *args], capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT)


@pytest.mark.parametrize("which, flag", [("grpc", "--port"), ("metrics", "--metrics-port")])
def test_orchestrator_with_a_busy_port_exits_with_one_line(busy_port, which, flag):
    from orchestrator.triton_process import free_port

    ports = {"grpc": free_port(), "metrics": free_port(), which: busy_port}
    result = orchestrator("--port", str(ports["grpc"]), "--metrics-port", str(ports["metrics"]))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"port {busy_port}" in lines[0] and f"{flag} N" in lines[0] and "in use" in lines[0]


def test_a_second_orchestrator_on_the_same_port_fails_instead_of_sharing_it(tmp_path):
    """gRPC sets SO_REUSEPORT by default: the second server's bind used to succeed and share the port."""
    from orchestrator.embedded import OrchestratorProcess
    from orchestrator.triton_process import free_port

    with OrchestratorProcess("127.0.0.1:1", tmp_path / "first.log", require_serving=False) as first:
        result = orchestrator("--port", str(first.port), "--metrics-port", str(free_port()))
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert f"the gRPC port {first.port} (127.0.0.1) is in use" in result.stderr
        result = orchestrator("--port", str(free_port()), "--metrics-port", str(first.metrics_port))
        assert result.returncode == 1 and f"the metrics port {first.metrics_port} is in use" in result.stderr


def test_up_with_a_busy_grpc_port_names_the_flag(busy_port):
    result = subprocess.run([sys.executable, "-m", "client.cli", "up", "--port", str(busy_port)], capture_output=True,
                            text=True, timeout=120, cwd=REPO_ROOT)
    assert result.returncode == 2
    assert result.stderr.strip() == (f"error: the gRPC port {busy_port} is in use (another `liveportrait up` or "
                                      f"orchestrator?); choose another with --port N")


def test_embedded_launcher_picks_a_free_metrics_port(busy_port):
    from orchestrator.embedded import StackConfig, resolve_ports
    from orchestrator.ports import port_in_use
    from orchestrator.triton_process import free_port

    said = []
    config = resolve_ports(StackConfig(port=free_port(), metrics_port=busy_port), said.append)
    assert config.metrics_port != busy_port and not port_in_use("0.0.0.0", config.metrics_port)
    assert said == [f"the metrics port {busy_port} is in use; serving the orchestrator's metrics on port "
                    f"{config.metrics_port} instead (choose one with --metrics-port N)"]
    free = StackConfig(port=free_port(), metrics_port=free_port())
    assert resolve_ports(free, said.append) == free and len(said) == 1
