"""API keys and per-key quotas (orchestrator/auth.py, keys.py, quotas.py) on a real grpc.aio server: who may call
which RPC, how much, and what a refused caller is told."""
from __future__ import annotations

import asyncio
import json
import logging
from contextlib import asynccontextmanager

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from orchestrator.auth import AuthInterceptor, BadCredentials, api_key
from orchestrator.keys import KeyFile, KeyFileError, key_digest, parse_key_file
from orchestrator.quota_store import LocalQuotaStore
from orchestrator.quotas import Caller, QuotaExceeded, Quotas, current_caller

SERVICE = "liveportrait.v1.PortraitAnimator"
KEYS = {"studio": "k-studio-0123456789", "viewer": "k-viewer-0123456789", "metered": "k-metered-0123456789"}


def write_keys(path, entries):
    path.write_text(json.dumps({"keys": entries}))


def entries(**overrides):
    base = [{"name": "studio", "sha256": key_digest(KEYS["studio"]), "rpcs": ["*"]},
            {"name": "viewer", "sha256": key_digest(KEYS["viewer"]), "rpcs": ["DetectFaces"]},
            {"name": "metered", "sha256": key_digest(KEYS["metered"]), "frames_per_minute": 60, "max_concurrent": 1,
             "max_frames": 100}]
    return [dict(e, **overrides.get(e["name"], {})) for e in base]


class Backend:
    """Stand-ins for two RPC kinds: a unary call, and a response stream that charges the caller frames."""

    def __init__(self):
        self.release = asyncio.Event()

    async def detect(self, request: bytes, context) -> bytes:
        return b"faces"

    async def animate(self, request: bytes, context):
        caller = current_caller.get()
        frames = int(request or b"1")
        try:
            caller.check_length(frames)  # the service maps QuotaExceeded like any ServiceError
        except QuotaExceeded as exc:
            await context.abort(exc.code, str(exc))
        await caller.charge(frames)
        yield b"frames:" + caller.policy.name.encode()
        if request == b"2":  # hold the call open until the test lets it finish
            await self.release.wait()


@asynccontextmanager
async def serving(tmp_path):
    """A grpc.aio server with the interceptor, the stand-in RPCs and the standard health service."""
    keys = tmp_path / "keys.json"
    write_keys(keys, entries())
    backend = Backend()
    interceptor = AuthInterceptor(KeyFile(keys, check_interval_s=0.0))
    backend.quotas = interceptor.quotas
    server = grpc.aio.server(interceptors=[interceptor])
    identity = dict(request_deserializer=None, response_serializer=None)
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, {
        "DetectFaces": grpc.unary_unary_rpc_method_handler(backend.detect, **identity),
        "AnimatePortrait": grpc.unary_stream_rpc_method_handler(backend.animate, **identity),
    })])
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield channel, keys, backend
    finally:
        await channel.close()
        await server.stop(0)


@pytest.fixture
def server(tmp_path):
    """Runs a test's ``async def scenario(channel, keys, backend)`` against a fresh server."""

    def run(scenario):
        async def main():
            async with serving(tmp_path) as parts:
                await scenario(*parts)

        asyncio.run(main())

    return run


def call(channel, method: str, key: str | None, request: bytes = b""):
    metadata = (("authorization", f"Bearer {key}"),) if key else ()
    if method == "DetectFaces":
        return channel.unary_unary(f"/{SERVICE}/DetectFaces")(request, metadata=metadata)
    return channel.unary_stream(f"/{SERVICE}/AnimatePortrait")(request, metadata=metadata)


async def status(coro_or_stream):
    try:
        if hasattr(coro_or_stream, "__aiter__"):
            return grpc.StatusCode.OK, [r async for r in coro_or_stream]
        return grpc.StatusCode.OK, await coro_or_stream
    except grpc.aio.AioRpcError as exc:
        return exc.code(), exc.details()


def test_no_key_and_an_unknown_key_are_unauthenticated_and_health_stays_open(server):
    async def scenario(channel, keys, backend):
        code, message = await status(call(channel, "DetectFaces", None))
        assert code == grpc.StatusCode.UNAUTHENTICATED and "authorization: Bearer" in message
        code, message = await status(call(channel, "DetectFaces", "not-a-key"))
        assert code == grpc.StatusCode.UNAUTHENTICATED and "not known" in message
        response = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert response.status == health_pb2.HealthCheckResponse.SERVING

    server(scenario)


def test_a_valid_key_is_served_and_a_key_without_the_right_is_denied(server):
    async def scenario(channel, keys, backend):
        assert await status(call(channel, "DetectFaces", KEYS["viewer"])) == (grpc.StatusCode.OK, b"faces")
        code, message = await status(call(channel, "AnimatePortrait", KEYS["viewer"]))
        assert code == grpc.StatusCode.PERMISSION_DENIED and "'viewer' may not call AnimatePortrait" in message
        assert await status(call(channel, "AnimatePortrait", KEYS["studio"])) == (grpc.StatusCode.OK, [b"frames:studio"])

    server(scenario)


def test_a_revoked_key_is_refused_once_the_file_changes_without_a_restart(server):
    async def scenario(channel, keys, backend):
        assert (await status(call(channel, "DetectFaces", KEYS["studio"])))[0] == grpc.StatusCode.OK
        write_keys(keys, [e for e in entries() if e["name"] != "studio"])
        code, _ = await status(call(channel, "DetectFaces", KEYS["studio"]))
        assert code == grpc.StatusCode.UNAUTHENTICATED
        assert (await status(call(channel, "DetectFaces", KEYS["viewer"])))[0] == grpc.StatusCode.OK

    server(scenario)


def test_a_key_over_its_frame_budget_gets_a_retry_hint_while_another_key_is_served(server):
    async def scenario(channel, keys, backend):
        assert (await status(call(channel, "AnimatePortrait", KEYS["metered"], b"60")))[0] == grpc.StatusCode.OK
        refused = call(channel, "AnimatePortrait", KEYS["metered"], b"1")
        code, message = await status(refused)
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "60 frames per minute" in message
        retry_ms = dict(await refused.trailing_metadata())["retry-after-ms"]
        assert 59_000 <= int(retry_ms) <= 61_000  # when the 60 frames leave the last minute
        assert (await status(call(channel, "AnimatePortrait", KEYS["studio"], b"60")))[0] == grpc.StatusCode.OK

    server(scenario)


def test_a_key_at_its_concurrency_limit_is_refused_until_its_call_ends(server):
    async def scenario(channel, keys, backend):
        first = call(channel, "AnimatePortrait", KEYS["metered"], b"2")
        assert await first.read() == b"frames:metered"  # running, held open
        code, message = await status(call(channel, "AnimatePortrait", KEYS["metered"], b"1"))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "already runs 1 request" in message
        backend.release.set()
        assert await first.read() == grpc.aio.EOF and await first.code() == grpc.StatusCode.OK

    server(scenario)


def test_a_cancelled_stream_gives_its_concurrency_slot_back(server):
    async def scenario(channel, keys, backend):
        held = call(channel, "AnimatePortrait", KEYS["metered"], b"2")
        assert await held.read() == b"frames:metered"  # running, suspended in the middle of its stream
        held.cancel()
        for _ in range(100):
            if backend.quotas.store.running("metered") == 0:
                break
            await asyncio.sleep(0.02)
        assert backend.quotas.store.running("metered") == 0
        assert (await status(call(channel, "AnimatePortrait", KEYS["metered"], b"1")))[0] == grpc.StatusCode.OK

    server(scenario)


def test_the_frame_limit_holds_on_the_frames_rendered_not_on_a_header():
    """A video header may announce no frame count (or a wrong one): the limit is enforced as frames are charged."""
    policy = parse_key_file(json.dumps({"keys": entries()}))[key_digest(KEYS["metered"])]
    caller = Caller(policy, Quotas())
    caller.check_length(0)  # what a header without a count gives
    asyncio.run(caller.charge(96))
    with pytest.raises(QuotaExceeded, match="at most 100 frames per request"):
        asyncio.run(caller.charge(8))


def test_a_request_longer_than_the_keys_limit_is_refused(server):
    async def scenario(channel, keys, backend):
        code, message = await status(call(channel, "AnimatePortrait", KEYS["metered"], b"101"))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "at most 100 frames" in message

    server(scenario)


def test_a_keys_frames_come_back_when_the_minute_they_were_rendered_in_is_over():
    now = [0.0]
    quotas = Quotas(LocalQuotaStore(clock=lambda: now[0]))
    policy = parse_key_file(json.dumps({"keys": entries()}))[key_digest(KEYS["metered"])]

    async def main():
        lease = await quotas.admit(policy)
        await quotas.charge(policy, 90)  # overdraws by 30 frames
        await quotas.release(policy, lease)
        with pytest.raises(QuotaExceeded) as refused:
            await quotas.admit(policy)
        assert refused.value.retry_after_s == pytest.approx(61.0)  # the charge counts a full minute
        now[0] = 60.0
        with pytest.raises(QuotaExceeded):
            await quotas.admit(policy)
        now[0] = 61.0
        await quotas.admit(policy)

    asyncio.run(main())


def test_malformed_key_files_are_refused_with_the_entry_at_fault(tmp_path):
    with pytest.raises(KeyFileError, match="entry 0: sha256 must be 64 hex digits"):
        parse_key_file(json.dumps({"keys": [{"name": "a", "sha256": "abc"}]}))
    with pytest.raises(KeyFileError, match="entry 0: max_concurrent must be > 0"):
        parse_key_file(json.dumps({"keys": [{"name": "a", "sha256": "0" * 64, "max_concurrent": 0}]}))
    with pytest.raises(KeyFileError, match="cannot read the key file"):
        KeyFile(tmp_path / "missing.json")


def test_keys_never_reach_the_log(server, caplog):
    async def scenario(channel, keys, backend):
        caplog.set_level(logging.DEBUG)
        await status(call(channel, "DetectFaces", KEYS["studio"]))
        write_keys(keys, entries())
        KeyFile(keys)
        assert not any(k in caplog.text or key_digest(k) in caplog.text for k in KEYS.values())

    server(scenario)


def call_with(channel, metadata, method: str = "DetectFaces"):
    return channel.unary_unary(f"/{SERVICE}/{method}")(b"", metadata=metadata)


def test_more_than_one_credential_is_refused_whichever_comes_first(server):
    """A proxy that adds a credential must not change who is charged: two values are ambiguous, not 'first wins'."""
    async def scenario(channel, keys, backend):
        for metadata in ((("authorization", f"Bearer {KEYS['studio']}"), ("authorization", "Bearer junk")),
                         (("authorization", f"Bearer {KEYS['viewer']}"), ("authorization", f"Bearer {KEYS['studio']}")),
                         (("authorization", f"Bearer {KEYS['studio']}"), ("x-api-key", KEYS["studio"]))):
            code, message = await status(call_with(channel, metadata))
            assert code == grpc.StatusCode.UNAUTHENTICATED and "2 credentials were sent" in message
            assert not any(key in message for key in KEYS.values())

    server(scenario)


@pytest.mark.parametrize("value, problem", [
    ("Basic " + KEYS["studio"], "not of the form 'Bearer <key>'"),
    (KEYS["studio"], "not of the form 'Bearer <key>'"),
    ("Bearer ", "holds no key"),
    ("Bearer " + KEYS["studio"] + " extra", "a key with a space in it"),
    ("Bearer " + "k" * 300, "307 characters long; an API key has at most 256"),
])
def test_a_malformed_authorization_is_unauthenticated_naming_the_problem_not_the_value(server, value, problem):
    async def scenario(channel, keys, backend):
        code, message = await status(call_with(channel, (("authorization", value),)))
        assert code == grpc.StatusCode.UNAUTHENTICATED and problem in message
        assert KEYS["studio"] not in message and "kkkk" not in message

    server(scenario)


def test_a_key_of_other_than_printable_ascii_is_refused_before_it_is_looked_up():
    # gRPC clients cannot send these; raw HTTP/2 clients can
    for value in ("Bearer k-é", "Bearer k\x00", "Bearer k\tx"):
        with pytest.raises(BadCredentials, match="characters other than printable ASCII"):
            api_key((("authorization", value),))
    assert api_key((("authorization", "bearer  k-1 "), ("user-agent", "x"))) == "k-1"
    assert api_key((("x-api-key", "k-2"),)) == "k-2"
    assert api_key((("user-agent", "x"),)) is None


def test_a_call_that_renders_nothing_is_served_when_the_keys_frame_budget_is_spent(server):
    async def scenario(channel, keys, backend):
        assert (await status(call(channel, "AnimatePortrait", KEYS["metered"], b"60")))[0] == grpc.StatusCode.OK
        code, _ = await status(call(channel, "AnimatePortrait", KEYS["metered"], b"1"))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED  # no frame left
        assert await status(call(channel, "DetectFaces", KEYS["metered"])) == (grpc.StatusCode.OK, b"faces")

    server(scenario)


def test_a_live_streams_frames_are_checked_one_by_one_against_the_keys_budgets():
    policy = parse_key_file(json.dumps({"keys": entries()}))[key_digest(KEYS["metered"])]  # 60/min, 100 per request

    async def main():
        caller = Caller(policy, Quotas())
        rendered = 0
        with pytest.raises(QuotaExceeded) as stopped:
            while True:
                await caller.check_budget()
                await caller.charge(1)
                rendered += 1
        assert rendered == 60 and "ended after 60 frames" in str(stopped.value)
        assert 59 < stopped.value.retry_after_s <= 61  # when its first frames leave the last minute
        long_stream = Caller(policy, Quotas(), rendered=100)
        with pytest.raises(QuotaExceeded, match="at most 100 frames per request") as ended:
            await long_stream.check_budget()
        assert ended.value.retry_after_s is None  # waiting does not help: a new stream does

    asyncio.run(main())


def test_the_asyncio_client_sends_its_key_on_every_kind_of_call():
    """grpc.aio files an interceptor under the first kind of call it implements: the client needs one per kind (the
    web page and the live client stream)."""
    from client.channel import ChannelSettings

    def key(context) -> bytes:
        return dict(context.invocation_metadata()).get("authorization", "").encode()

    async def unary_unary(request, context):
        return key(context)

    async def unary_stream(request, context):
        yield key(context)

    async def stream_unary(requests, context):
        return key(context)

    async def stream_stream(requests, context):
        yield key(context)

    async def one():
        yield b""

    async def main():
        server = grpc.aio.server()
        server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("echo", {
            "UU": grpc.unary_unary_rpc_method_handler(unary_unary),
            "US": grpc.unary_stream_rpc_method_handler(unary_stream),
            "SU": grpc.stream_unary_rpc_method_handler(stream_unary),
            "SS": grpc.stream_stream_rpc_method_handler(stream_stream)})])
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        channel = ChannelSettings(f"127.0.0.1:{port}", api_key="k-1").aio_channel()
        try:
            seen = [await channel.unary_unary("/echo/UU")(b""),
                    *[r async for r in channel.unary_stream("/echo/US")(b"")],
                    await channel.stream_unary("/echo/SU")(one()),
                    *[r async for r in channel.stream_stream("/echo/SS")(one())]]
        finally:
            await channel.close()
            await server.stop(0)
        assert seen == [b"Bearer k-1"] * 4

    asyncio.run(main())
