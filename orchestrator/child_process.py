"""Helpers for the servers the project starts as child processes (tritonserver, the orchestrator, Prometheus)."""
from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path


def stop_process_group(process: subprocess.Popen | None, timeout_s: float) -> None:
    """SIGTERM the child's process group (it was started with ``start_new_session``), SIGKILL what is left after
    ``timeout_s``, and reap the child. Also when the child itself already died: its own children (tritonserver's
    Python-backend stubs) are still in the group and must not be left behind."""
    if process is None:
        return
    group = process.pid
    _signal_group(group, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    try:
        process.wait(max(0.0, deadline - time.monotonic()))  # reaps the leader: no zombie
    except subprocess.TimeoutExpired:
        pass
    while group_alive(group) and time.monotonic() < deadline:
        time.sleep(0.1)
    if group_alive(group):
        _signal_group(group, signal.SIGKILL)
        process.wait()
        until = time.monotonic() + 5.0
        while group_alive(group) and time.monotonic() < until:
            time.sleep(0.05)


def group_alive(group: int) -> bool:
    """Whether a live (not zombie) process is left in the process group; zombies are their parents' to reap."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return False
        return True
    for stat in proc.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "pid (comm)": state ppid pgrp ...
        except (OSError, IndexError):
            continue
        if int(fields[2]) == group and fields[0] != "Z":
            return True
    return False


def _signal_group(group: int, signum: int) -> None:
    try:
        os.killpg(group, signum)
    except ProcessLookupError:
        pass


class ChildServer:
    """What every server the project runs as a child process group shares: spawning it with its output in
    ``log_file``, waiting until it is ready (it must not exit first), ``stop()``, and use as a context manager.

    A subclass provides ``name``, ``log_file``, ``startup_timeout_s``, ``start()`` and ``is_ready()``; ``error`` is the
    exception raised when it does not start."""

    name = "server"
    error: type[Exception] = RuntimeError
    stop_timeout_s = 20.0
    _process: subprocess.Popen | None = None

    def start(self):
        raise NotImplementedError

    def is_ready(self) -> bool:
        raise NotImplementedError

    def spawn(self, command: list[str], **popen_args) -> None:
        """Start ``command`` in its own process group with stdout and stderr appended to ``log_file``, then wait
        until ``is_ready()``."""
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                             **popen_args)
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise self.error(f"{self.name} exited with code {self._process.returncode}:\n{self.log_tail()}")
            if self.is_ready():
                return
            time.sleep(0.5)
        self.stop()
        raise self.error(f"{self.name} not ready after {self.startup_timeout_s:.0f} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        return log_tail(self.log_file, lines)

    @property
    def exit_code(self) -> int | None:
        """None while the server runs (or before it started); its exit code once it exited."""
        return self._process.poll() if self._process else None

    def stop(self, timeout_s: float | None = None) -> None:
        stop_process_group(self._process, self.stop_timeout_s if timeout_s is None else timeout_s)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def http_ok(url: str) -> bool:
    """Whether ``url`` answers 200 within 2 s (a readiness endpoint)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
