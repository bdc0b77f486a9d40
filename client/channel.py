"""The gRPC channel to the orchestrator: target, TLS (optionally with a client certificate for mutual TLS) and the
API key sent as ``authorization: Bearer <key>`` on every call (an interceptor, so it works on plaintext channels
too, e.g. behind a TLS-terminating ingress)."""
from __future__ import annotations

import os
from collections import namedtuple
from dataclasses import dataclass, field
from pathlib import Path

import grpc

MAX_MESSAGE_BYTES = 64 * 1024 * 1024


def default_target() -> str:
    return os.environ.get("LIVEPORTRAIT_SERVER", "localhost:50051")


def default_api_key() -> str | None:
    return os.environ.get("LIVEPORTRAIT_API_KEY") or None


@dataclass(frozen=True)
class ChannelSettings:
    target: str = "localhost:50051"
    root_certificates: Path | None = None  # TLS with this CA bundle (None: plaintext)
    api_key: str | None = field(default=None, repr=False)  # never printed
    client_cert: Path | None = None  # mutual TLS: this certificate (PEM) and its key
    client_key: Path | None = None

    def options(self) -> list[tuple[str, int | str]]:
        return [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.lb_policy_name", "round_robin"),
                ("grpc.keepalive_time_ms", 30_000)]

    def credentials(self) -> grpc.ChannelCredentials | None:
        if bool(self.client_cert) != bool(self.client_key):
            raise ValueError("a client certificate and its key go together")
        if not self.root_certificates:
            if self.client_cert:
                raise ValueError("a client certificate needs TLS: give the server's CA too")
            return None
        read = (lambda path: Path(path).read_bytes() if path else None)
        return grpc.ssl_channel_credentials(read(self.root_certificates), read(self.client_key),
                                            read(self.client_cert))

    def channel(self) -> grpc.Channel:
        credentials = self.credentials()
        channel = (grpc.secure_channel(self.target, credentials, options=self.options()) if credentials
                   else grpc.insecure_channel(self.target, options=self.options()))
        return grpc.intercept_channel(channel, ApiKey(self.api_key)) if self.api_key else channel

    def aio_channel(self) -> grpc.aio.Channel:
        credentials = self.credentials()
        interceptors = async_api_key(self.api_key) if self.api_key else None
        if credentials:
            return grpc.aio.secure_channel(self.target, credentials, options=self.options(), interceptors=interceptors)
        return grpc.aio.insecure_channel(self.target, options=self.options(), interceptors=interceptors)


_Details = namedtuple("_Details", ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression"))


class _CallDetails(_Details, grpc.ClientCallDetails):
    pass


def _with_key(details, header: tuple[str, str]):
    return _CallDetails(details.method, details.timeout, (*(details.metadata or ()), header), details.credentials,
                        details.wait_for_ready, getattr(details, "compression", None))


class ApiKey(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
             grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    """Adds the API key to every call of a blocking channel."""

    def __init__(self, key: str):
        self.header = ("authorization", f"Bearer {key}")

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(_with_key(details, self.header), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(_with_key(details, self.header), request)

    def intercept_stream_unary(self, continuation, details, request_iterator):
        return continuation(_with_key(details, self.header), request_iterator)

    def intercept_stream_stream(self, continuation, details, request_iterator):
        return continuation(_with_key(details, self.header), request_iterator)


class _AsyncApiKey:
    def __init__(self, key: str):
        self.header = ("authorization", f"Bearer {key}")

    def _details(self, details):
        return grpc.aio.ClientCallDetails(details.method, details.timeout,
                                          grpc.aio.Metadata(*(details.metadata or ()), self.header),
                                          details.credentials, details.wait_for_ready)


class _AsyncUnaryUnary(_AsyncApiKey, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation, details, request):
        return await continuation(self._details(details), request)


class _AsyncUnaryStream(_AsyncApiKey, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation, details, request):
        return await continuation(self._details(details), request)


class _AsyncStreamUnary(_AsyncApiKey, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(self, continuation, details, request_iterator):
        return await continuation(self._details(details), request_iterator)


class _AsyncStreamStream(_AsyncApiKey, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(self, continuation, details, request_iterator):
        return await continuation(self._details(details), request_iterator)


def async_api_key(key: str) -> list[_AsyncApiKey]:
    """Interceptors adding the API key to every call of an asyncio channel: one per kind of call, as grpc.aio files
    an interceptor under the first kind it implements only (one class for all four sent the key on unary calls
    alone)."""
    return [kind(key) for kind in (_AsyncUnaryUnary, _AsyncUnaryStream, _AsyncStreamUnary, _AsyncStreamStream)]
