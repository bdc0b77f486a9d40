"""The orchestrator's spool: every orchestrator process writes its uploads (``uploads.SpoolFile``) into a folder of
its own, ``<spool-dir>/orchestrator-<pid>-<start>-<random>``, removed when the process exits.

A process killed with SIGKILL cannot remove its folder, so every start also removes the folders whose owner is gone:
its pid no longer runs, or runs as another process (the pid's start time, in clock ticks since boot, differs from
the ``<start>`` in the folder's name), or the machine booted since (the boot id in the folder's ``owner.json``).
Folders written by another host (a shared volume) are left to that host's orchestrators.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import tempfile
from pathlib import Path

log = logging.getLogger("liveportrait.orchestrator")
PREFIX = "orchestrator-"
OWNER = "owner.json"


def default_spool_dir() -> Path:
    """``<tmp>/liveportrait-spool-<uid>``: one base folder per user, so that users do not share (or clean) one."""
    return Path(tempfile.gettempdir()) / f"liveportrait-spool-{os.getuid()}"


def process_start(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot), or None when no such process runs (a zombie counts as
    gone). Without ``/proc``: "0" for any running pid."""
    if not Path("/proc/self/stat").exists():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return "0"
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()  # after "pid (comm)": state ...
    except (OSError, IndexError):
        return None
    return None if fields[0] == "Z" else fields[19]  # field 22 of the line: starttime


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def owner_alive(folder: Path) -> bool:
    """Whether the process that made ``folder`` may still use it."""
    try:
        pid, start = folder.name[len(PREFIX):].split("-")[:2]
        pid = int(pid)
    except ValueError:
        return True  # not a name this module makes: not ours to remove
    try:
        owner = json.loads((folder / OWNER).read_text())
    except (OSError, ValueError):
        owner = {}  # killed before it wrote its owner file: judged by its name alone
    if owner.get("host", socket.gethostname()) != socket.gethostname():
        return True
    if owner.get("boot", boot_id()) != boot_id():
        return False
    return process_start(pid) == start


def remove_stale(base: Path) -> list[Path]:
    """Remove the folders in ``base`` whose owner is gone; returns them."""
    removed = []
    for folder in sorted(base.glob(PREFIX + "*")):
        if folder.is_dir() and not owner_alive(folder):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


class ProcessSpool:
    """This process's spool folder under ``base`` (default: ``default_spool_dir()``): ``open()`` removes what gone
    owners left and makes the folder, ``close()`` removes it with everything in it."""

    def __init__(self, base: Path | None = None):
        self.base = Path(base) if base else default_spool_dir()
        self.path: Path | None = None

    def open(self) -> Path:
        self.base.mkdir(mode=0o700, parents=True, exist_ok=True)
        removed = remove_stale(self.base)
        if removed:
            log.info("removed %d spool folder(s) of orchestrator processes that are gone: %s", len(removed),
                     ", ".join(folder.name for folder in removed))
        pid = os.getpid()
        # a random suffix: several orchestrators of one process (tests) have a folder each
        self.path = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{pid}-{process_start(pid)}-", dir=self.base))
        (self.path / OWNER).write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "boot": boot_id()}))
        return self.path

    def close(self) -> None:
        if self.path is not None:
            shutil.rmtree(self.path, ignore_errors=True)
            self.path = None
