"""A real redis-server (Debian's package, installed by scripts/install_tools.sh) on a free loopback port, with its
files in a temporary folder and no persistence: what the shared quota store (orchestrator/quota_store.py) is tested
against."""
from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from orchestrator.triton_process import free_port


class RedisServer:
    """``start()`` / ``stop()`` (again and again: the port stays the same, the data does not survive a stop)."""

    def __init__(self, folder: Path, port: int | None = None):
        self.folder = Path(folder)
        self.port = port or free_port()
        self._process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is missing: `make tools` installs it (scripts/install_tools.sh, Debian's "
                        "redis-server package)")
        self.folder.mkdir(parents=True, exist_ok=True)
        self._process = subprocess.Popen(
            [binary, "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.folder), "--save", "",
             "--appendonly", "no", "--daemonize", "no", "--logfile", str(self.folder / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while not self.answers():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                log = (self.folder / "redis.log").read_text() if (self.folder / "redis.log").exists() else ""
                pytest.fail(f"redis-server did not start on port {self.port}:\n{log[-2000:]}")
            time.sleep(0.05)
        return self

    def answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as connection:
                connection.sendall(b"PING\r\n")
                return connection.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None

    def __enter__(self) -> "RedisServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory) -> RedisServer:
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server
