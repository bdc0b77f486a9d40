"""Who may call: API keys checked by a server interceptor, which admits each call under its key's quotas.

Keys are bearer tokens in gRPC metadata (``authorization: Bearer <key>``). The server knows them only by their SHA-256,
from the key file (orchestrator/keys.py, re-read when it changes). ``rpcs`` lists the methods a key may call
(``AnimatePortrait``, ``ExtractMotion``, ``DetectFaces``, ...; ``*`` for all); the quotas (orchestrator/quotas.py)
are optional. ``python -m orchestrator.auth NAME`` makes a key and prints its entry. Health and reflection stay open
(probes and tooling). A missing, unknown, malformed or ambiguous key (more than one credential: a proxy that adds one
must not change who is charged) is ``UNAUTHENTICATED`` naming the problem, never the value; a key without the right
to the method ``PERMISSION_DENIED``; a key over a quota ``RESOURCE_EXHAUSTED`` with a ``retry-after-ms`` trailer when
waiting helps; a shared quota store that does not answer (failing closed) ``UNAVAILABLE``. Only key names reach logs
and metrics, never keys or digests.
"""
from __future__ import annotations

import functools
import inspect
import json
import logging
import os
import secrets
import sys
from contextlib import asynccontextmanager

import grpc

from .keys import KeyFile, KeyPolicy, key_digest
from .quota_store import QuotaStoreUnavailable
from .quotas import RENDERING_RPCS, Caller, QuotaExceeded, Quotas, current_caller

log = logging.getLogger("liveportrait.orchestrator.auth")
OPEN_SERVICES = ("grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection",
                 "grpc.reflection.v1.ServerReflection")
CREDENTIAL_HEADERS = ("authorization", "x-api-key")
MAX_KEY_CHARS = 256  # keys made by ``python -m orchestrator.auth`` have 43
# The orchestrator's gRPC metadata limit (grpc.max_metadata_size and grpc.absolute_max_metadata_size): far above any
# credential this interceptor accepts, so an oversized one reaches it and is refused as UNAUTHENTICATED (gRPC would
# otherwise end the call itself with its own RESOURCE_EXHAUSTED wording above its 16 KiB default).
MAX_METADATA_BYTES = 256 * 1024
HINT = "send the metadata 'authorization: Bearer <key>'"


class BadCredentials(ValueError):
    """The call's credentials are ambiguous or malformed (the message names the problem, never the value)."""


def api_key(metadata) -> str | None:
    """The call's API key (None when none was sent); BadCredentials when there is more than one credential or it is
    not ``Bearer <key>`` (``x-api-key: <key>`` is accepted too) with a key of printable ASCII, no spaces, at most
    ``MAX_KEY_CHARS`` characters."""
    sent = [(name, value) for name, value in metadata or () if name in CREDENTIAL_HEADERS]
    if not sent:
        return None
    if len(sent) > 1:
        names = " and ".join(f"'{name}'" for name in sorted({name for name, _ in sent}))
        raise BadCredentials(f"{len(sent)} credentials were sent ({names} metadata); exactly one is accepted")
    name, value = sent[0]
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if len(value) > MAX_KEY_CHARS + len("Bearer "):
        raise BadCredentials(f"the '{name}' metadata is {len(value)} characters long; an API key has at most "
                             f"{MAX_KEY_CHARS}")
    if not (value.isascii() and value.isprintable()):
        raise BadCredentials(f"the '{name}' metadata holds characters other than printable ASCII")
    key = value
    if name == "authorization":
        scheme, _, key = value.strip().partition(" ")
        if scheme.lower() != "bearer":
            raise BadCredentials("the 'authorization' metadata is not of the form 'Bearer <key>'")
    key = key.strip()
    if not key:
        raise BadCredentials(f"the '{name}' metadata holds no key")
    if " " in key:
        raise BadCredentials(f"the '{name}' metadata holds a key with a space in it")
    return key


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Checks the API key of every RPC but health and reflection; admits it under its key's quotas."""

    def __init__(self, keys: KeyFile, quotas: Quotas | None = None, requests_counter=None, frames_counter=None):
        self.keys = keys
        self.quotas = quotas or Quotas()
        self.requests_counter = requests_counter  # labels: key, outcome
        self.frames_counter = frames_counter

    async def intercept_service(self, continuation, details):
        handler = await continuation(details)
        service, _, method = details.method.lstrip("/").rpartition("/")
        if handler is None or service in OPEN_SERVICES:
            return handler
        try:
            key = api_key(details.invocation_metadata)
        except BadCredentials as exc:
            self._count("unknown", "UNAUTHENTICATED")
            return _wrap(handler, _refuse(grpc.StatusCode.UNAUTHENTICATED, f"{exc}: {HINT}"))
        policy = self.keys.lookup(key) if key else None
        if policy is None:
            self._count("unknown", "UNAUTHENTICATED")
            reason = "no API key was sent" if key is None else "the API key is not known (revoked or mistyped)"
            return _wrap(handler, _refuse(grpc.StatusCode.UNAUTHENTICATED, f"{reason}: {HINT}"))
        if not policy.allows(method):
            self._count(policy.name, "PERMISSION_DENIED")
            return _wrap(handler, _refuse(grpc.StatusCode.PERMISSION_DENIED,
                                          f"the key {policy.name!r} may not call {method}"))
        return _wrap(handler, self._admit(policy, method in RENDERING_RPCS))

    def _count(self, name: str, outcome: str) -> None:
        if self.requests_counter is not None:
            self.requests_counter.labels(key=name, outcome=outcome).inc()

    def _admit(self, policy: KeyPolicy, renders: bool):
        @asynccontextmanager
        async def admitted(context):
            try:
                lease = await self.quotas.admit(policy, renders)
            except QuotaExceeded as exc:
                self._count(policy.name, "RESOURCE_EXHAUSTED")
                await context.abort(exc.code, str(exc), trailing_metadata=exc.trailing_metadata())
            except QuotaStoreUnavailable as exc:
                self._count(policy.name, "UNAVAILABLE")
                await context.abort(exc.code, str(exc))
            self._count(policy.name, "ADMITTED")
            token = current_caller.set(Caller(policy, self.quotas, self.frames_counter))
            try:
                yield
            finally:
                try:  # first: a stream closed later (by asyncio) runs this in another context
                    await self.quotas.release(policy, lease)
                finally:
                    try:
                        current_caller.reset(token)
                    except ValueError:
                        pass

        return admitted


def _refuse(code: grpc.StatusCode, message: str):
    @asynccontextmanager
    async def refused(context):
        await context.abort(code, message)
        yield  # never reached: abort raises

    return refused


def _wrap(handler, around):
    """The same handler with its behaviour run inside ``around(context)`` (an async context manager)."""

    async def call(behaviour, request, context):
        async with around(context):
            result = behaviour(request, context)
            return await result if inspect.isawaitable(result) else result

    async def stream(behaviour, request, context):
        async with around(context):
            result = behaviour(request, context)
            if inspect.isasyncgen(result):
                async for response in result:
                    yield response
            else:
                await result

    kinds = {
        "unary_unary": (grpc.unary_unary_rpc_method_handler, call),
        "stream_unary": (grpc.stream_unary_rpc_method_handler, call),
        "unary_stream": (grpc.unary_stream_rpc_method_handler, stream),
        "stream_stream": (grpc.stream_stream_rpc_method_handler, stream),
    }
    for kind, (make, runner) in kinds.items():
        behaviour = getattr(handler, kind)
        if behaviour is not None:
            # a partial of an async function: grpc.aio tells coroutine and async-generator behaviours apart by it
            return make(functools.partial(runner, behaviour), request_deserializer=handler.request_deserializer,
                        response_serializer=handler.response_serializer)
    return handler


def main(argv: list[str] | None = None) -> int:
    """``python -m orchestrator.auth NAME [RPC ...]``: a new key (printed once) and its key-file entry."""
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print("usage: python -m orchestrator.auth NAME [RPC ...]", file=sys.stderr)
        return 2
    key = os.environ.get("LIVEPORTRAIT_NEW_KEY") or secrets.token_urlsafe(32)
    print(f"key (give it to the caller; it is not stored): {key}")
    print(json.dumps({"name": args[0], "sha256": key_digest(key), "rpcs": args[1:] or ["*"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
