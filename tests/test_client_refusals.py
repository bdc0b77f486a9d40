"""The asyncio client reports the server's refusal when the server ends a call while the client is still sending
(a refused key or setup, a spent quota): never grpc.aio's "INTERNAL: Internal error from Core" for its own failed
send, never a cancellation. A server here refuses every call at once, before reading what is sent; the uploads are
large enough that the client is still sending when the refusal comes."""
from __future__ import annotations

import asyncio
from collections import Counter

import grpc
import pytest

from client.api import AsyncPortraitClient
from protos.liveportrait.v1 import portrait_animator_pb2 as pb
from protos.liveportrait.v1 import portrait_animator_pb2_grpc as pb_grpc

TRIES = 60
REFUSAL = "the API key is not known here"


class Refusing(pb_grpc.PortraitAnimatorServicer):
    async def AnimatePortrait(self, request_iterator, context):
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, REFUSAL)
        yield

    async def ExtractMotion(self, request_iterator, context):
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, REFUSAL)

    async def AnimateStream(self, request_iterator, context):
        await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, REFUSAL, trailing_metadata=(("retry-after-ms", "1500"),))
        yield


async def refusals(call_once, tries: int = TRIES) -> Counter:
    server = grpc.aio.server()
    pb_grpc.add_PortraitAnimatorServicer_to_server(Refusing(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    said = Counter()
    try:
        for _ in range(tries):
            async with AsyncPortraitClient(f"127.0.0.1:{port}") as client:
                try:
                    await asyncio.wait_for(call_once(client), 10)
                    said["no error"] += 1
                except grpc.aio.AioRpcError as exc:
                    said[(exc.code(), exc.details(), dict(exc.trailing_metadata() or ()).get("retry-after-ms"))] += 1
                except BaseException as exc:  # a cancellation, a timeout: what this test is here to rule out
                    said[type(exc).__name__] += 1
    finally:
        await server.stop(None)
    return said


@pytest.fixture
def video(tmp_path):
    path = tmp_path / "driving.mp4"
    path.write_bytes(b"\0" * (3 * 1024 * 1024))  # sent in chunks; its content never matters to a refusal
    return path


def test_a_refused_animation_reports_the_servers_status(tmp_path, video):
    async def animate(client):
        await client.animate(b"\xff\xd8" + b"\0" * 200_000, video, output=tmp_path / "out.mp4")

    assert asyncio.run(refusals(animate)) == {(grpc.StatusCode.UNAUTHENTICATED, REFUSAL, None): TRIES}
    assert not (tmp_path / "out.mp4").exists()


def test_a_refused_motion_extraction_reports_the_servers_status(video):
    async def extract(client):
        await client.extract_motion(video)

    assert asyncio.run(refusals(extract)) == {(grpc.StatusCode.UNAUTHENTICATED, REFUSAL, None): TRIES}


def test_a_refused_live_stream_reports_the_servers_status_and_its_retry_hint():
    async def live(client):
        async with client.live(b"\xff\xd8" + b"\0" * 300_000):
            pass

    tries = 4 * TRIES  # one message before the refusal: the race is rarer than with an upload
    assert asyncio.run(refusals(live, tries)) == {(grpc.StatusCode.RESOURCE_EXHAUSTED, REFUSAL, "1500"): tries}
