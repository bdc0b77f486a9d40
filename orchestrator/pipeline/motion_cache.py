"""The driving motion of recent driving videos, kept in memory (bounded in bytes, least recently used first out), so
that a driving video sent again (a gallery clip many requests use) skips decode, face tracking and the motion
extractor.

An entry is found by the video's fingerprint and the settings its motion depends on (``VideoDriving.motion_settings``:
the driving crop and tracker settings, the face stack and its settings, whether eye/lip ratios are measured, the
model set and weights). The fingerprint is the SHA-256 digest and the length of the video's bytes; a second,
independent digest (BLAKE2b) of the same bytes is kept with the entry and compared on every hit, so that another
video, even one colliding on SHA-256 and length, is never served someone else's motion (it is a miss, and replaces
the entry when its own motion is complete). Only complete motion is stored (a video that failed or was not read to
its end stores nothing), as copies: what a request does to its chunks never reaches the cache.
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..keypoints import Motion
from ..metrics import Metrics

FIELDS = ("scale", "R", "exp", "t", "eye_ratio", "lip_ratio")


@dataclass(frozen=True)
class VideoFingerprint:
    digest: bytes  # SHA-256 of the video's bytes
    size: int  # their length
    check: bytes  # BLAKE2b-128 of the same bytes, compared on a hit


def fingerprint(path: Path, block: int = 1 << 20) -> VideoFingerprint:
    """The fingerprint of a (spooled) video file, in one pass over its bytes."""
    sha, blake, size = hashlib.sha256(), hashlib.blake2b(digest_size=16), 0
    with open(path, "rb") as file:
        while data := file.read(block):
            sha.update(data)
            blake.update(data)
            size += len(data)
    return VideoFingerprint(sha.digest(), size, blake.digest())


def motion_copy(motion: Motion) -> Motion:
    return Motion(*(None if getattr(motion, f) is None else np.array(getattr(motion, f)) for f in FIELDS))


def motion_nbytes(motion: Motion) -> int:
    return sum(getattr(motion, f).nbytes for f in FIELDS if getattr(motion, f) is not None)


@dataclass(frozen=True)
class _Entry:
    motion: Motion
    check: bytes
    nbytes: int


class MotionCache:
    """Motion by (video fingerprint, settings), at most ``max_bytes`` of motion arrays; 0 turns it off. Used from the
    event loop only (no locking)."""

    ENTRY_OVERHEAD = 512  # bytes counted per entry beyond its arrays (key, Python objects)

    def __init__(self, max_bytes: int, metrics: Metrics | None = None):
        if max_bytes < 0:
            raise ValueError(f"the motion cache size must be >= 0 bytes, got {max_bytes}")
        self.max_bytes = max_bytes
        self.metrics = metrics
        self._entries: OrderedDict[tuple, _Entry] = OrderedDict()
        self.bytes = 0

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, video: VideoFingerprint, settings: tuple) -> Motion | None:
        """The motion of ``video`` extracted with ``settings`` (a copy), or None (counted as a hit or a miss)."""
        if not self.enabled:
            return None
        key = (video.digest, video.size, settings)
        entry = self._entries.get(key)
        if entry is None or entry.check != video.check:
            self._count("misses")
            return None
        self._entries.move_to_end(key)
        self._count("hits")
        return motion_copy(entry.motion)

    def fits(self, nbytes: int) -> bool:
        """Whether motion of ``nbytes`` could be stored (callers stop collecting a video's motion beyond it)."""
        return self.enabled and nbytes + self.ENTRY_OVERHEAD <= self.max_bytes

    def put(self, video: VideoFingerprint, settings: tuple, motion: Motion) -> None:
        """Store the complete motion of ``video`` (copied), evicting the least recently used entries to fit."""
        nbytes = motion_nbytes(motion) + self.ENTRY_OVERHEAD
        if not self.enabled or nbytes > self.max_bytes:
            return
        key = (video.digest, video.size, settings)
        self._remove(key)
        while self.bytes + nbytes > self.max_bytes:
            self._remove(next(iter(self._entries)))
            self._count("evictions")
        self._entries[key] = _Entry(motion_copy(motion), video.check, nbytes)
        self.bytes += nbytes
        self._gauge()

    def _remove(self, key: tuple) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self.bytes -= entry.nbytes
            self._gauge()

    def _count(self, outcome: str) -> None:
        if self.metrics is not None:
            getattr(self.metrics, f"motion_cache_{outcome}").inc()

    def _gauge(self) -> None:
        if self.metrics is not None:
            self.metrics.motion_cache_bytes.set(self.bytes)
