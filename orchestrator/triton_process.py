"""Start and stop the embedded Triton Inference Server (the tritonserver binary of the nvidia-pytriton wheel).

``scripts/install_triton.sh`` installs it into ``<repo>/.triton`` (or ``$LIVEPORTRAIT_TRITON_HOME``):
the server binary, the Python backend with its 3.11 stub, and ``python/`` with numpy + onnxruntime for the stub.
"""
from __future__ import annotations

import importlib.util
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

from .child_process import ChildServer, http_ok

REPO_ROOT = Path(__file__).resolve().parents[1]


class TritonStartError(RuntimeError):
    """tritonserver is not installed, exited, or did not become ready in time."""


@dataclass(frozen=True)
class TritonInstall:
    home: Path

    @classmethod
    def locate(cls) -> "TritonInstall":
        home = Path(os.environ.get("LIVEPORTRAIT_TRITON_HOME", REPO_ROOT / ".triton"))
        install = cls(home)
        if not install.binary.is_file():
            raise TritonStartError(
                f"tritonserver not found under {home}; install it with `bash scripts/install_triton.sh {home}` "
                "(or set LIVEPORTRAIT_TRITON_HOME)")
        return install

    @property
    def server_dir(self) -> Path:
        return self.home / "pytriton" / "tritonserver"

    @property
    def binary(self) -> Path:
        return self.server_dir / "bin" / "tritonserver"

    @property
    def backends(self) -> Path:
        return self.server_dir / "backends"

    @property
    def backend_python_path(self) -> str:
        """Where the Python-backend models find their packages: numpy + onnxruntime installed for the stub, then
        the folder holding this interpreter's torch, if any (the pytorch target's models need it)."""
        paths = [str(self.home / "python")]
        torch = importlib.util.find_spec("torch")
        if torch is not None and torch.origin:
            paths.append(str(Path(torch.origin).parents[1]))
        return os.pathsep.join(paths)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class TritonPorts:
    http: int = field(default_factory=free_port)
    grpc: int = field(default_factory=free_port)
    metrics: int = field(default_factory=free_port)


@dataclass
class TritonProcess(ChildServer):
    """A tritonserver child process serving ``model_repository`` on loopback."""

    name = "tritonserver"
    error = TritonStartError
    stop_timeout_s = 30.0

    model_repository: Path
    log_file: Path
    ports: TritonPorts = field(default_factory=TritonPorts)
    startup_timeout_s: float = 300.0
    extra_args: tuple[str, ...] = ()
    extra_env: dict[str, str] = field(default_factory=dict)  # e.g. PYTHONHOME / LD_LIBRARY_PATH for the stub

    def __post_init__(self):
        self._shm_before: set[str] = set()

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.ports.grpc}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.http}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.metrics}/metrics"

    def command(self, install: TritonInstall) -> list[str]:
        return [
            str(install.binary),
            f"--model-repository={self.model_repository}",
            f"--backend-directory={install.backends}",
            f"--http-port={self.ports.http}", f"--grpc-port={self.ports.grpc}",
            f"--metrics-port={self.ports.metrics}", "--http-address=127.0.0.1", "--grpc-address=127.0.0.1",
            "--allow-metrics=true", "--allow-gpu-metrics=false", "--strict-readiness=true",
            "--exit-timeout-secs=10", *self.extra_args,
        ]

    def start(self) -> "TritonProcess":
        install = TritonInstall.locate()
        self._shm_before = set(shm_regions())
        # PYTHONPATH: the stub imports numpy (triton_python_backend_utils) before any model code runs
        paths = install.backend_python_path
        self.spawn(self.command(install), env=dict(os.environ, LIVEPORTRAIT_BACKEND_PYTHONPATH=paths,
                                                   PYTHONPATH=paths, **self.extra_env))
        return self

    def is_ready(self) -> bool:
        return http_ok(f"{self.http_url}/v2/health/ready")

    def stop(self, timeout_s: float | None = None) -> None:
        """Stop the server and its Python-backend stubs, then remove the shared-memory regions they used (a server
        or stub that died does not remove its own): the ones the group maps, and those made since the start that no
        live process maps (their stubs died first)."""
        ours = mapped_shm_regions(self._process.pid) if self._process else set()
        super().stop(timeout_s)
        orphans = set(shm_regions()) - self._shm_before - mapped_shm_regions()
        for name in ours | orphans:
            (SHM / name).unlink(missing_ok=True)


SHM = Path("/dev/shm")
SHM_PREFIX = "triton_python_backend_shm_region_"


def shm_regions() -> list[str]:
    return [p.name for p in SHM.glob(SHM_PREFIX + "*")] if SHM.is_dir() else []


def mapped_shm_regions(group: int | None = None) -> set[str]:
    """The Python-backend regions mapped by live processes (of process group ``group`` only, when given)."""
    names = set()
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if group is not None and int((proc / "stat").read_text().rsplit(")", 1)[1].split()[2]) != group:
                continue
            text = (proc / "maps").read_text()
        except (OSError, IndexError, ValueError):
            continue
        if SHM_PREFIX in text:
            names.update(line.rsplit("/", 1)[-1] for line in text.splitlines() if SHM_PREFIX in line)
    return names
