"""``liveportrait gateway`` as a child process (tests, load tests): started on a free loopback port, ready when
``/healthz`` answers, stopped with its process group."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.child_process import ChildServer, http_ok
from orchestrator.triton_process import REPO_ROOT, free_port


@dataclass
class GatewayProcess(ChildServer):
    name = "the gateway"

    target: str  # the orchestrator
    log_file: Path
    port: int = field(default_factory=free_port)
    extra_args: tuple[str, ...] = ()
    startup_timeout_s: float = 60.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "GatewayProcess":
        command = [sys.executable, "-m", "client.gateway.cli", "--target", self.target, "--host", "127.0.0.1",
                   "--port", str(self.port), *self.extra_args]
        self.spawn(command, cwd=REPO_ROOT, env=dict(os.environ, PYTHONUNBUFFERED="1"))
        return self

    def is_ready(self) -> bool:
        return http_ok(self.url + "/healthz")
