"""The driving motion cache (``pipeline.motion_cache``): a repeated driving video is served from memory, other settings
or other bytes are not, the cache stays within its bytes (least recently used out), a digest collision never serves
another video's motion; through the real tritonserver, a repeated video skips decode, tracking and the motion
extractor and gives the same motion."""
from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from load_tests.scenarios import cut_video
from orchestrator.face import make_analyzer
from orchestrator.keypoints import Motion
from orchestrator.media import probe
from orchestrator.metrics import Metrics
from orchestrator.options import DrivingCropOptions
from orchestrator.pipeline import motion_cache
from orchestrator.pipeline.driving import VideoDriving
from orchestrator.pipeline.motion_cache import MotionCache, VideoFingerprint, fingerprint, motion_nbytes
from orchestrator.timing import Timings
from orchestrator.triton_client import RequestRunner, Traffic, TritonConfig, TritonRunner

EXAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "examples"
SETTINGS = ("crop=True", "ratios=True")


def motion(frames: int, seed: int) -> Motion:
    rng = np.random.default_rng(seed)
    f32 = np.float32
    return Motion(rng.random(frames, f32), rng.random((frames, 3, 3), f32), rng.random((frames, 21, 3), f32),
                  rng.random((frames, 3), f32), rng.random((frames, 2), f32), rng.random(frames, f32))


def video(name: bytes) -> VideoFingerprint:
    return VideoFingerprint(name.ljust(32, b"."), 1000, name)


def same(a: Motion, b: Motion) -> bool:
    return all(np.array_equal(getattr(a, f), getattr(b, f)) for f in motion_cache.FIELDS)


def test_a_repeated_video_is_a_hit_with_its_own_motion_and_a_copy():
    metrics = Metrics()
    cache = MotionCache(1 << 20, metrics)
    stored = motion(30, 0)
    assert cache.get(video(b"a"), SETTINGS) is None
    cache.put(video(b"a"), SETTINGS, stored)
    hit = cache.get(video(b"a"), SETTINGS)
    assert hit is not None and same(hit, stored)
    hit.exp[:] = 0  # what a request does to its motion never reaches the cache
    assert same(cache.get(video(b"a"), SETTINGS), stored)
    assert metrics.motion_cache_hits._value.get() == 2 and metrics.motion_cache_misses._value.get() == 1
    assert metrics.motion_cache_bytes._value.get() == cache.bytes > motion_nbytes(stored)


def test_other_settings_or_other_bytes_are_misses():
    cache = MotionCache(1 << 20)
    cache.put(video(b"a"), SETTINGS, motion(10, 0))
    assert cache.get(video(b"a"), ("crop=False", "ratios=True")) is None
    assert cache.get(video(b"b"), SETTINGS) is None
    longer = VideoFingerprint(video(b"a").digest, 1001, b"a")  # same digest, another length
    assert cache.get(longer, SETTINGS) is None


def test_the_cache_keeps_within_its_bytes_dropping_the_least_recently_used():
    metrics = Metrics()
    entry = motion_nbytes(motion(100, 0)) + MotionCache.ENTRY_OVERHEAD
    cache = MotionCache(2 * entry + 10, metrics)
    cache.put(video(b"a"), SETTINGS, motion(100, 0))
    cache.put(video(b"b"), SETTINGS, motion(100, 1))
    assert cache.get(video(b"a"), SETTINGS) is not None  # a is now the most recently used
    cache.put(video(b"c"), SETTINGS, motion(100, 2))
    assert cache.get(video(b"b"), SETTINGS) is None, "b was the least recently used"
    assert cache.get(video(b"a"), SETTINGS) is not None and cache.get(video(b"c"), SETTINGS) is not None
    assert len(cache) == 2 and cache.bytes == 2 * entry <= cache.max_bytes
    assert metrics.motion_cache_evictions._value.get() == 1
    cache.put(video(b"d"), SETTINGS, motion(300, 3))  # larger than the whole cache: not stored, nothing dropped
    assert cache.get(video(b"d"), SETTINGS) is None and len(cache) == 2


def test_a_forced_digest_collision_never_serves_another_videos_motion(tmp_path, monkeypatch):
    class Colliding:  # every input has the same "SHA-256"
        def update(self, data):
            pass

        def digest(self):
            return b"\0" * 32

    monkeypatch.setattr(motion_cache.hashlib, "sha256", Colliding)
    first, second = tmp_path / "first.mp4", tmp_path / "second.mp4"
    first.write_bytes(b"one video" * 100)
    second.write_bytes(b"two video" * 100)
    a, b = fingerprint(first), fingerprint(second)
    assert (a.digest, a.size) == (b.digest, b.size), "the collision is forced"
    cache = MotionCache(1 << 20)
    cache.put(a, SETTINGS, motion(10, 0))
    assert cache.get(b, SETTINGS) is None
    assert cache.get(a, SETTINGS) is not None
    cache.put(b, SETTINGS, motion(10, 1))  # the colliding video's own motion replaces the entry
    assert same(cache.get(b, SETTINGS), motion(10, 1)) and cache.get(a, SETTINGS) is None


def test_size_zero_turns_the_cache_off():
    cache = MotionCache(0, Metrics())
    cache.put(video(b"a"), SETTINGS, motion(10, 0))
    assert not cache.enabled and cache.get(video(b"a"), SETTINGS) is None and len(cache) == 0
    with pytest.raises(ValueError):
        MotionCache(-1)


@pytest.mark.triton
def test_a_repeated_driving_video_skips_decode_tracking_and_the_motion_extractor(triton_server, tmp_path):
    path = tmp_path / "driving.mp4"
    path.write_bytes(cut_video(EXAMPLES / "driving" / "d0.mp4", 12))
    cache = MotionCache(1 << 20, Metrics())

    async def run(crop: DrivingCropOptions) -> tuple[Motion, Timings, Traffic]:
        runner = TritonRunner(TritonConfig(url=triton_server.grpc_url), Metrics())
        try:
            traffic, timings = Traffic(), Timings()
            request = RequestRunner(runner, traffic, deadline=None)
            driving = VideoDriving(path, probe(path), request, make_analyzer(request), crop, True, timings, chunk=8,
                                   cache=cache, models="human synthetic")
            chunks = [m async for m in driving.chunks()]
            assert [len(c) for c in chunks] == [8, 4]
            return Motion.concat(chunks), timings, traffic
        finally:
            await runner.close()

    first, timings, traffic = asyncio.run(run(DrivingCropOptions(crop=True)))
    assert {"detect", "motion"} <= set(timings.seconds) and traffic.sent > 0
    again, timings, traffic = asyncio.run(run(DrivingCropOptions(crop=True)))
    assert not {"detect", "motion"} & set(timings.seconds) and traffic.sent == 0
    assert same(again, first)
    _, timings, traffic = asyncio.run(run(DrivingCropOptions(crop=False)))  # another crop: extracted again
    assert "motion" in set(timings.seconds) and traffic.sent > 0 and len(cache) == 2
