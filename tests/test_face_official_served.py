"""The official face stack served end to end: `liveportrait-export --face-weights DIR` adds the three official face
models to a repository, the real tritonserver serves them, and an orchestrator started with `--face-stack official`
detects, crops and animates with them (generated stand-ins for the user-supplied files; see standins.py)."""
from __future__ import annotations

from pathlib import Path

import cv2
import grpc
import numpy as np
import pytest

from client.api import PortraitClient
from client.templates import read_template
from export_scripts.cli import ExportRequest, parse_args, run_export
from export_scripts.face_models.standins import STANDIN_EYE_RATIOS, STANDIN_LIP_RATIO, write_official_standins
from load_tests.scenarios import short_template
from orchestrator.embedded import OrchestratorProcess
from orchestrator.triton_process import TritonProcess

EXAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "examples"
OFFICIAL_MODELS = ("official_face_detector", "official_landmarks_106", "official_landmarks_203")

pytestmark = pytest.mark.triton


def bright_square_png(path: Path) -> Path:
    """A "face" for the stand-in detector: a bright square on black (800x600)."""
    image = np.zeros((600, 800, 3), np.uint8)
    image[300:380, 400:480] = 255
    cv2.imwrite(str(path), image)
    return path


@pytest.fixture(scope="module")
def official_repository(tmp_path_factory) -> Path:
    weights = tmp_path_factory.mktemp("face-weights")
    write_official_standins(weights)
    output = tmp_path_factory.mktemp("repo-official-faces")
    run_export(ExportRequest("synthetic", "tiny", "cpu", output, face_weights=str(weights)), log=lambda *_: None)
    return output


@pytest.fixture(scope="module")
def client(official_repository, tmp_path_factory):
    logs = tmp_path_factory.mktemp("logs")
    with TritonProcess(official_repository, logs / "tritonserver.log") as triton, \
            OrchestratorProcess(triton.grpc_url, logs / "orchestrator.log",
                                extra_args=("--face-stack", "official")) as orchestrator, \
            PortraitClient(orchestrator.target) as portrait_client:
        yield portrait_client


def test_export_adds_the_official_face_models(official_repository):
    for name in OFFICIAL_MODELS:
        config = (official_repository / name / "config.pbtxt").read_text()
        assert "user-supplied" in config and (official_repository / name / "1" / "model.onnx").is_file()
    assert (official_repository / "face_detector" / "config.pbtxt").is_file()  # the default stack stays


def test_face_weights_without_the_files_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        parse_args(["--weights", "synthetic", "--output", str(tmp_path / "r"), "--face-weights", str(tmp_path)])
    assert "det_10g.onnx" in capsys.readouterr().err


def test_detect_faces_uses_the_official_stack(client, tmp_path):
    response = client.detect(bright_square_png(tmp_path / "square.png"), timeout=60)
    assert len(response.faces) == 1
    face = response.faces[0]
    assert len(face.landmarks) == 2 * 203  # the official 203-point layout, not FaceMesh's 468
    x1, y1, x2, y2 = face.box
    assert x1 <= 440 <= x2 and y1 <= 340 <= y2
    np.testing.assert_allclose(face.eye_ratio, STANDIN_EYE_RATIOS, atol=1e-4)
    assert face.lip_ratio == pytest.approx(STANDIN_LIP_RATIO, abs=1e-4)


def test_animate_with_the_official_stack(client, tmp_path):
    template = short_template(EXAMPLES / "templates" / "d7.pkl", 3)
    summary = client.animate(bright_square_png(tmp_path / "square.png"), template, tmp_path / "out.mp4", timeout=120)
    assert summary.frames == 3 and (summary.width, summary.height) == (800, 600)
    assert (tmp_path / "out.mp4").stat().st_size > 0


def test_no_face_for_the_official_detector_is_failed_precondition(client, tmp_path):
    black = tmp_path / "black.png"
    cv2.imwrite(str(black), np.zeros((480, 640, 3), np.uint8))
    with pytest.raises(grpc.RpcError) as error:
        client.animate(black, read_template(EXAMPLES / "templates" / "d7.pkl"), tmp_path / "out.mp4", timeout=60)
    assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert len(client.detect(bright_square_png(tmp_path / "again.png"), timeout=60).faces) == 1  # still serving
