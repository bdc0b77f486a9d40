"""Session fixtures that export the tiny CPU model repository and serve it with the real tritonserver."""
from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
BUILD = REPO_ROOT / "build" / "test"


@pytest.fixture(scope="session")
def tiny_cpu_repository() -> Path:
    """``liveportrait-export --weights synthetic --profile tiny --target cpu`` (cached in build/test; idempotent)."""
    from export_scripts.cli import ExportRequest, run_export

    output = BUILD / "repo-tiny-cpu"
    run_export(ExportRequest(weights="synthetic", profile="tiny", target="cpu", output=output), log=lambda *_: None)
    return output


@pytest.fixture(scope="session")
def triton_server(tiny_cpu_repository: Path):
    """A real tritonserver serving the tiny CPU repository on loopback ports."""
    yield from _serve(tiny_cpu_repository, "tritonserver.log")


@pytest.fixture(scope="session")
def tiny_audio_repository() -> Path:
    """The tiny CPU repository with the audio models (``liveportrait-export --audio``; cached, idempotent)."""
    from export_scripts.cli import ExportRequest, run_export

    output = BUILD / "repo-tiny-cpu-audio"
    run_export(ExportRequest(weights="synthetic", profile="tiny", target="cpu", output=output, audio=True),
               log=lambda *_: None)
    return output


@pytest.fixture(scope="session")
def audio_triton_server(tiny_audio_repository: Path):
    """A real tritonserver serving the tiny CPU repository with the audio models (one start for the audio modules)."""
    yield from _serve(tiny_audio_repository, "tritonserver-audio-e2e.log")


def _serve(repository: Path, log_name: str):
    """A started tritonserver for ``repository`` until the generator is closed (a fixture's body)."""
    from orchestrator.triton_process import TritonProcess

    server = TritonProcess(repository, log_file=BUILD / log_name)
    server.start()
    try:
        yield server
    finally:
        server.stop()
