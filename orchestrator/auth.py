"""Who may call, and how much: API keys checked by a server interceptor, with per-key quotas.

Keys are bearer tokens in gRPC metadata (``authorization: Bearer <key>``). The server knows them only by their SHA-256,
from a JSON key file (a Kubernetes Secret mounted as a file works: the file is re-read when it changes, so a key is
added or revoked without a restart)::

    {"keys": [{"name": "studio-a", "sha256": "<hex>", "rpcs": ["*"],
               "max_concurrent": 2, "frames_per_minute": 6000, "max_frames": 9000}]}

``rpcs`` lists the methods the key may call (``AnimatePortrait``, ``ExtractMotion``, ``DetectFaces``, ...; ``*`` for
all); the quotas are optional. ``python -m orchestrator.auth NAME`` makes a key and prints its entry. Health and
reflection stay open (probes and tooling). A missing or unknown key is ``UNAUTHENTICATED``, a key without the right to
the method ``PERMISSION_DENIED``; a key over a quota ``RESOURCE_EXHAUSTED`` with a ``retry-after-ms`` trailer when
waiting helps. Only key names reach logs and metrics, never keys or digests.
"""
from __future__ import annotations

import contextvars
import functools
import hashlib
import hmac
import inspect
import json
import logging
import math
import os
import secrets
import sys
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from .errors import ServiceError

log = logging.getLogger("liveportrait.orchestrator.auth")
OPEN_SERVICES = ("grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection",
                 "grpc.reflection.v1.ServerReflection")


class KeyFileError(ValueError):
    """The key file cannot be read or is malformed (the message says where)."""


class QuotaExceeded(ServiceError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED

    def __init__(self, message: str, retry_after_s: float | None = None):
        super().__init__(message)
        self.retry_after_s = retry_after_s

    def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        if self.retry_after_s is None:
            return ()
        return (("retry-after-ms", str(max(1, math.ceil(self.retry_after_s * 1000)))),)


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


@dataclass
class _Usage:
    running: int = 0
    tokens: float | None = None  # frames left in the bucket
    updated: float = field(default_factory=time.monotonic)


class Quotas:
    """Per key name: requests running at once, and a token bucket of rendered frames refilled at
    ``frames_per_minute`` (capacity one minute's worth; a request may overdraw it, the next ones wait)."""

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self._usage: dict[str, _Usage] = {}

    def _bucket(self, policy: KeyPolicy) -> _Usage:
        usage = self._usage.setdefault(policy.name, _Usage(updated=self.clock()))
        if policy.frames_per_minute:
            now = self.clock()
            tokens = policy.frames_per_minute if usage.tokens is None else usage.tokens
            usage.tokens = min(policy.frames_per_minute, tokens + (now - usage.updated) * policy.frames_per_minute / 60)
            usage.updated = now
        return usage

    def admit(self, policy: KeyPolicy) -> None:
        usage = self._bucket(policy)
        if policy.max_concurrent and usage.running >= policy.max_concurrent:
            raise QuotaExceeded(f"the key {policy.name!r} already runs {usage.running} request(s), its limit; retry "
                                "when one finishes", retry_after_s=1.0)
        if policy.frames_per_minute and usage.tokens < 1:
            wait = (1 - usage.tokens) * 60 / policy.frames_per_minute
            raise QuotaExceeded(f"the key {policy.name!r} used its {policy.frames_per_minute:g} frames per minute; "
                                f"retry in {wait:.1f} s", retry_after_s=wait)
        usage.running += 1

    def release(self, policy: KeyPolicy) -> None:
        self._usage[policy.name].running -= 1

    def charge(self, policy: KeyPolicy, frames: int) -> None:
        usage = self._bucket(policy)
        if policy.frames_per_minute:
            usage.tokens -= frames


@dataclass
class Caller:
    """The authenticated caller of the current RPC (``current_caller``), for the pipeline to charge frames to."""

    policy: KeyPolicy
    quotas: Quotas
    frames_counter: object = None  # prometheus Counter with a "key" label, or None
    rendered: int = 0  # frames of this request so far

    def check_length(self, frames: int) -> None:
        """Refuse up front a request known to be longer than the key's limit (a count read from a container header
        may be missing or wrong: ``charge`` enforces the limit on the frames actually rendered)."""
        limit = self.policy.max_frames
        if limit and frames > limit:
            raise QuotaExceeded(f"the key {self.policy.name!r} may render at most {limit} frames per request; this "
                                f"one has {frames}")

    def charge(self, frames: int) -> None:
        self.quotas.charge(self.policy, frames)
        if self.frames_counter is not None:
            self.frames_counter.labels(key=self.policy.name).inc(frames)
        self.rendered += frames
        limit = self.policy.max_frames
        if limit and self.rendered > limit:
            raise QuotaExceeded(f"the key {self.policy.name!r} may render at most {limit} frames per request; this "
                                f"one went past it")


current_caller: contextvars.ContextVar[Caller | None] = contextvars.ContextVar("liveportrait_caller", default=None)


def bearer_key(metadata) -> str | None:
    for name, value in metadata or ():
        if name == "authorization" and isinstance(value, str) and value.lower().startswith("bearer "):
            return value[7:].strip() or None
        if name == "x-api-key" and isinstance(value, str):
            return value.strip() or None
    return None


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
        key = bearer_key(details.invocation_metadata)
        policy = self.keys.lookup(key) if key else None
        if policy is None:
            self._count("unknown", "UNAUTHENTICATED")
            reason = "no API key was sent" if key is None else "the API key is not known (revoked or mistyped)"
            return _wrap(handler, _refuse(grpc.StatusCode.UNAUTHENTICATED,
                                          f"{reason}: send the metadata 'authorization: Bearer <key>'"))
        if not policy.allows(method):
            self._count(policy.name, "PERMISSION_DENIED")
            return _wrap(handler, _refuse(grpc.StatusCode.PERMISSION_DENIED,
                                          f"the key {policy.name!r} may not call {method}"))
        return _wrap(handler, self._admit(policy))

    def _count(self, name: str, outcome: str) -> None:
        if self.requests_counter is not None:
            self.requests_counter.labels(key=name, outcome=outcome).inc()

    def _admit(self, policy: KeyPolicy):
        @asynccontextmanager
        async def admitted(context):
            try:
                self.quotas.admit(policy)
            except QuotaExceeded as exc:
                self._count(policy.name, "RESOURCE_EXHAUSTED")
                await context.abort(exc.code, str(exc), trailing_metadata=exc.trailing_metadata())
            self._count(policy.name, "ADMITTED")
            token = current_caller.set(Caller(policy, self.quotas, self.frames_counter))
            try:
                yield
            finally:
                self.quotas.release(policy)  # first: a stream closed later (by asyncio) runs this in another context
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
