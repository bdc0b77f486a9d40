"""Helpers for the servers the project starts as child processes (tritonserver, the orchestrator, Prometheus)."""
from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path


def stop_process_group(process: subprocess.Popen | None, timeout_s: float) -> None:
    """SIGTERM the child's process group (it was started with ``start_new_session``), SIGKILL after ``timeout_s``."""
    if process is None or process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


class ChildServer:
    """What every server the project runs as a child process group (in ``self._process``) shares: ``stop()`` and
    use as a context manager around ``start()``."""

    stop_timeout_s = 20.0

    def start(self):
        raise NotImplementedError

    def stop(self, timeout_s: float | None = None) -> None:
        stop_process_group(self._process, self.stop_timeout_s if timeout_s is None else timeout_s)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
