"""The API key file: key names, SHA-256 digests, rights and quotas (``orchestrator/auth.py`` checks calls against it).

A JSON key file (a Kubernetes Secret mounted as a file works: the file is re-read when it changes, so a key is added or
revoked without a restart)::

    {"keys": [{"name": "studio-a", "sha256": "<hex>", "rpcs": ["*"],
               "max_concurrent": 2, "frames_per_minute": 6000, "max_frames": 9000}]}
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("liveportrait.orchestrator.auth")


class KeyFileError(ValueError):
    """The key file cannot be read or is malformed (the message says where)."""


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class KeyPolicy:
    name: str
    sha256: str
    rpcs: frozenset[str] = frozenset({"*"})
    max_concurrent: int | None = None
    frames_per_minute: float | None = None
    max_frames: int | None = None

    def allows(self, method: str) -> bool:
        return "*" in self.rpcs or method in self.rpcs


def parse_key_file(text: str, where: str = "key file") -> dict[str, KeyPolicy]:
    """sha256 -> policy; raises KeyFileError naming the entry at fault."""
    try:
        entries = json.loads(text)["keys"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise KeyFileError(f"{where}: expected a JSON object with a 'keys' list ({exc})") from None
    policies = {}
    for index, entry in enumerate(entries):
        try:
            digest = str(entry["sha256"]).lower()
            if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                raise ValueError("sha256 must be 64 hex digits")
            policy = KeyPolicy(
                name=str(entry["name"]), sha256=digest, rpcs=frozenset(entry.get("rpcs", ["*"])),
                max_concurrent=_positive(entry, "max_concurrent", int),
                frames_per_minute=_positive(entry, "frames_per_minute", float),
                max_frames=_positive(entry, "max_frames", int))
        except (KeyError, TypeError, ValueError) as exc:
            raise KeyFileError(f"{where}: entry {index}: {exc}") from None
        policies[digest] = policy
    return policies


def _positive(entry: dict, name: str, kind):
    value = entry.get(name)
    if value is None:
        return None
    value = kind(value)
    if not value > 0:
        raise ValueError(f"{name} must be > 0")
    return value


class KeyFile:
    """The key file, re-read when its content changes (checked at most every ``check_interval_s``). A file that
    becomes unreadable or malformed keeps the keys last read (and logs why); the first read must succeed."""

    def __init__(self, path: Path, check_interval_s: float = 1.0):
        self.path = Path(path)
        self.check_interval_s = check_interval_s
        self._stamp = None
        self._checked = 0.0
        self._policies = self._read()

    def _read(self) -> dict[str, KeyPolicy]:
        try:
            stat = self.path.stat()
            text = self.path.read_text()
        except OSError as exc:
            raise KeyFileError(f"cannot read the key file {self.path}: {exc.strerror or exc}") from None
        policies = parse_key_file(text, str(self.path))
        self._stamp = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        log.info("API keys loaded from %s: %s", self.path, ", ".join(sorted(p.name for p in policies.values())))
        return policies

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._checked < self.check_interval_s:
            return
        self._checked = now
        try:
            stat = self.path.stat()
            if (stat.st_ino, stat.st_size, stat.st_mtime_ns) != self._stamp:
                self._policies = self._read()
        except (OSError, KeyFileError) as exc:
            log.error("API keys not reloaded, the previous ones stay in force: %s", exc)

    def lookup(self, key: str) -> KeyPolicy | None:
        self._refresh()
        digest = key_digest(key)
        for known, policy in self._policies.items():
            if hmac.compare_digest(known, digest):
                return policy
        return None
