"""Per-key quotas on the real stack: two orchestrator replicas on one tritonserver (tiny profile) keep their keys'
quotas in one real redis-server. A live stream is charged per rendered frame and ended when its key's frame budget is
spent; a call that renders nothing is still served; what one replica used the other refuses; when Redis stops, the
replica that fails closed answers UNAVAILABLE at once and the one that fails open serves."""
from __future__ import annotations

import asyncio
import itertools
import json
import urllib.request
from pathlib import Path

import av
import grpc
import numpy as np
import pytest

from client.api import AsyncPortraitClient, PortraitClient
from orchestrator.embedded import OrchestratorProcess
from orchestrator.keys import key_digest

from redis_fixtures import RedisServer

EXAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "examples"
SOURCE = EXAMPLES / "source" / "s0.jpg"
LIVE, SHARED, FREE = "k-live-0123456789", "k-shared-0123456789", "k-free-0123456789"
LIVE_PER_MINUTE = 6  # a frame back every 10 s: the stream spends the budget long before one comes back
SHARED_PER_MINUTE = 12  # a frame back every 5 s: the test renders its 16 frames long before they come back


@pytest.fixture(scope="module")
def replicas(triton_server, tmp_path_factory):
    """Replica A fails closed (the default), replica B fails open; both keep the quotas in one Redis."""
    folder = tmp_path_factory.mktemp("quota")
    keys = folder / "keys.json"
    keys.write_text(json.dumps({"keys": [
        {"name": "live", "sha256": key_digest(LIVE), "frames_per_minute": LIVE_PER_MINUTE, "max_concurrent": 1},
        {"name": "shared", "sha256": key_digest(SHARED), "frames_per_minute": SHARED_PER_MINUTE},
        {"name": "free", "sha256": key_digest(FREE)}]}))
    with RedisServer(folder / "redis") as redis:
        common = ("--api-keys", str(keys), "--quota-redis-url", redis.url)
        a = OrchestratorProcess(triton_server.grpc_url, folder / "a.log", extra_args=common)
        b = OrchestratorProcess(triton_server.grpc_url, folder / "b.log",
                                extra_args=(*common, "--quota-redis-fail", "open"))
        with a, b:
            yield a, b, redis


@pytest.fixture(scope="module")
def faces() -> list[np.ndarray]:
    """The first 8 frames of d0.mp4 (a face in each)."""
    with av.open(str(EXAMPLES / "driving" / "d0.mp4")) as container:
        return [frame.to_ndarray(format="rgb24") for frame in itertools.islice(container.decode(video=0), 8)]


def key_frames(replica, name: str) -> float:
    text = urllib.request.urlopen(replica.metrics_url, timeout=5).read().decode()
    line = f'liveportrait_key_frames_total{{key="{name}"}} '
    return sum(float(row[len(line):]) for row in text.splitlines() if row.startswith(line))


def detect(replica, key: str) -> tuple[grpc.StatusCode, str]:
    with PortraitClient(replica.target, api_key=key) as client:
        try:
            client.detect(SOURCE, timeout=10)  # a hang would end as DEADLINE_EXCEEDED
        except grpc.RpcError as exc:
            return exc.code(), exc.details()
    return grpc.StatusCode.OK, ""


def animate(replica, key: str, frames: int):
    """(code, details, trailers, summary) of an AnimatePortrait of ``frames`` template frames."""
    from load_tests.scenarios import short_template

    template = short_template(EXAMPLES / "templates" / "d7.pkl", frames)
    with PortraitClient(replica.target, api_key=key) as client:
        try:
            return grpc.StatusCode.OK, "", {}, client.animate(SOURCE, template, timeout=120)
        except grpc.RpcError as exc:
            return exc.code(), exc.details(), dict(exc.trailing_metadata() or ()), None


@pytest.mark.triton
def test_a_live_stream_is_charged_per_frame_and_ended_when_its_keys_budget_is_spent(replicas, faces):
    a, b, _ = replicas

    async def main():
        delivered = []
        async with AsyncPortraitClient(a.target, api_key=LIVE) as client:
            async with client.live(SOURCE, fps=10) as stream:
                # the key's one concurrency slot is held on every replica while the stream runs
                code, message = await asyncio.to_thread(detect, b, LIVE)
                assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "already runs 1 request" in message
                with pytest.raises(grpc.aio.AioRpcError) as ended:
                    for frame in itertools.cycle(faces):
                        stream.send(frame)
                        delivered.append(await anext(stream))  # each answered before the next is sent
            return delivered, ended.value

    delivered, ended = asyncio.run(asyncio.wait_for(main(), 120))
    assert ended.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "'live' used its 6 frames per minute" in ended.details() and "ended after" in ended.details()
    assert 0 < int(dict(ended.trailing_metadata())["retry-after-ms"]) <= 61_000  # when its first frames age out
    assert len(delivered) == LIVE_PER_MINUTE  # stopped mid-stream at the key's minute, nothing lost
    assert all(result.face_found and result.rgb() is not None for result in delivered)
    assert key_frames(a, "live") == len(delivered)  # charged exactly the frames rendered
    assert detect(b, LIVE) == (grpc.StatusCode.OK, "")  # renders nothing: served with the frame budget spent


@pytest.mark.triton
def test_two_replicas_share_one_keys_frames_per_minute_through_redis(replicas):
    a, b, _ = replicas
    code, _, _, summary = animate(a, SHARED, 8)
    assert code == grpc.StatusCode.OK and summary.frames == 8
    # 4 frames are left: replica B admits the request, which overdraws the minute by the rest of its length (the
    # documented overdraw of one request)
    code, _, _, summary = animate(b, SHARED, 8)
    assert code == grpc.StatusCode.OK and summary.frames == 8
    for replica in (a, b):  # alone, replica A would still have 4 frames left
        code, message, trailers, _ = animate(replica, SHARED, 1)
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "used its 12 frames per minute" in message
        assert 0 < int(trailers["retry-after-ms"]) <= 61_000  # when the first request's frames leave the minute
    assert key_frames(a, "shared") + key_frames(b, "shared") == 16


@pytest.mark.triton
def test_when_redis_stops_the_closed_replica_says_unavailable_at_once_and_the_open_one_serves(replicas):
    a, b, redis = replicas
    redis.stop()
    try:
        code, message = detect(a, LIVE)  # the key has a concurrency quota: it needs Redis
        assert code == grpc.StatusCode.UNAVAILABLE
        assert "quota store (Redis) is unavailable" in message
        assert detect(b, LIVE) == (grpc.StatusCode.OK, "")  # fails open: served, uncounted
        assert detect(a, FREE) == (grpc.StatusCode.OK, "")  # a key without quotas never needs Redis
    finally:
        redis.start()
    assert detect(a, LIVE) == (grpc.StatusCode.OK, "")  # Redis is back: the closed replica serves again
