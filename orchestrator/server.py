"""``liveportrait-orchestrator``: the asyncio gRPC server (PortraitAnimator + grpc.health.v1 + reflection + metrics).

Every setting is a flag with an environment-variable default (``LIVEPORTRAIT_<FLAG>``, e.g.
``LIVEPORTRAIT_TRITON_URL``); see ``--help`` and ``config.py``.
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from pathlib import Path

import cv2
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from protos.liveportrait.v1 import portrait_animator_pb2 as pb
from protos.liveportrait.v1 import portrait_animator_pb2_grpc as pb_grpc

from .admission import Admission
from .auth import MAX_METADATA_BYTES, AuthInterceptor
from .config import ServerConfig, parse_args
from .metrics import Metrics
from .keys import KeyFile, KeyFileError
from .ports import port_in_use
from .quota_store import make_store
from .quotas import Quotas
from .service import PortraitAnimatorService, ServingState
from .spool import ProcessSpool
from .triton_client import TritonRunner

log = logging.getLogger("liveportrait.orchestrator")
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["PortraitAnimator"].full_name
class StartupError(RuntimeError):
    """The server cannot start (a port in use); the message is one line that names the flag to change."""


class Orchestrator:
    """The running server; ``start()`` then ``wait()``, ``stop()`` drains in-flight calls for ``drain_s``."""

    def __init__(self, config: ServerConfig):
        self.config = config
        self.metrics = Metrics()
        self.state = ServingState()
        self.health = HealthServicer()
        self.runner: TritonRunner | None = None
        self.server: grpc.aio.Server | None = None
        self.port: int | None = None
        self._watcher: asyncio.Task | None = None
        self._metrics_server = None
        self.service: PortraitAnimatorService | None = None
        self.health_server: grpc.aio.Server | None = None
        self.quota_store = None
        self.spool = ProcessSpool(config.spool_dir)

    async def start(self) -> int:
        self._check_ports()
        try:
            spool_dir = self.spool.open()
        except OSError as exc:
            raise StartupError(f"cannot use the spool directory {self.spool.base} ({exc.strerror or exc}); choose "
                               f"another with --spool-dir DIR") from None
        try:
            return await self._start(spool_dir)
        except BaseException:
            self.spool.close()
            raise

    async def _start(self, spool_dir: Path) -> int:
        c = self.config
        self.runner = TritonRunner(c.triton, self.metrics)
        service = self.service = PortraitAnimatorService(self.runner, self.metrics,
                                                         Admission(c.max_concurrent, c.max_queued, self.metrics),
                                                         c.limits, self.state, c.face_stack, spool_dir)
        interceptors = []
        if c.api_keys:
            try:
                keys = KeyFile(c.api_keys)
            except KeyFileError as exc:
                raise StartupError(str(exc)) from None
            try:
                self.quota_store = make_store(c.quota_redis_url, self._quota_redis_password(), c.quota_redis_fail)
            except ValueError as exc:  # a URL redis-py cannot parse
                raise StartupError(f"--quota-redis-url: {exc}") from None
            interceptors.append(AuthInterceptor(keys, Quotas(self.quota_store), self.metrics.key_requests,
                                                self.metrics.key_frames))
        self.server = grpc.aio.server(interceptors=interceptors, options=[
            # an oversized credential reaches the interceptor (UNAUTHENTICATED) instead of gRPC's own refusal
            ("grpc.max_metadata_size", MAX_METADATA_BYTES),
            ("grpc.absolute_max_metadata_size", MAX_METADATA_BYTES),
            ("grpc.max_receive_message_length", c.max_message_bytes),
            ("grpc.max_send_message_length", c.max_message_bytes),
            ("grpc.so_reuseport", 0),  # a second server on the same port fails instead of silently sharing it
        ])
        pb_grpc.add_PortraitAnimatorServicer_to_server(service, self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection((SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                                             reflection.SERVICE_NAME), self.server)
        target = f"{c.address}:{c.port}"
        try:
            if c.tls_cert:
                credentials = self._tls_credentials()
                self.port = self.server.add_secure_port(target, credentials)
            else:
                self.port = self.server.add_insecure_port(target)
        except RuntimeError:  # "Failed to bind to address": lost a race for the port, or an address not of this host
            raise StartupError(f"cannot listen on {target} for gRPC (port in use, or an address not of this "
                               f"host); choose another with --port / --address") from None
        if c.metrics_port:
            try:
                self._metrics_server = self.metrics.serve(c.metrics_port)
            except OSError as exc:
                raise StartupError(f"cannot serve metrics on port {c.metrics_port} ({exc.strerror or exc}); choose "
                                   f"another with --metrics-port N (0 turns the metrics endpoint off)") from None
        if c.health_port:
            self.health_server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
            health_pb2_grpc.add_HealthServicer_to_server(self.health, self.health_server)
            try:
                self.health_server.add_insecure_port(f"{c.address}:{c.health_port}")
            except RuntimeError:
                raise StartupError(f"cannot listen on {c.address}:{c.health_port} for health checks; choose another "
                                   f"with --health-port") from None
        await self._set_health(False)
        await self.server.start()
        if self.health_server:
            await self.health_server.start()
        self._watcher = asyncio.create_task(self._watch_triton())
        log.info("serving %s on %s (Triton %s, metrics port %s)", SERVICE_NAME, self.port, c.triton.url,
                 c.metrics_port or "off")
        return self.port

    def _tls_credentials(self) -> grpc.ServerCredentials:
        c = self.config
        try:
            key, cert = c.tls_key.read_bytes(), c.tls_cert.read_bytes()
            client_ca = c.tls_client_ca.read_bytes() if c.tls_client_ca else None
        except OSError as exc:
            raise StartupError(f"cannot read a TLS file: {exc.filename}: {exc.strerror}") from None
        return grpc.ssl_server_credentials([(key, cert)], root_certificates=client_ca,
                                           require_client_auth=client_ca is not None)

    def _quota_redis_password(self) -> str | None:
        path = self.config.quota_redis_password_file
        if path is None:
            return os.environ.get("LIVEPORTRAIT_QUOTA_REDIS_PASSWORD") or None
        try:
            return path.read_text().strip() or None
        except OSError as exc:
            raise StartupError(f"cannot read the Redis password file {path}: {exc.strerror or exc}; fix "
                               f"--quota-redis-password-file") from None

    def _check_ports(self) -> None:
        c = self.config
        if port_in_use(c.address, c.port):
            raise StartupError(f"the gRPC port {c.port} ({c.address}) is in use, e.g. by another orchestrator or "
                               f"`liveportrait up`; choose another with --port N (or $LIVEPORTRAIT_PORT)")
        if c.metrics_port and port_in_use("0.0.0.0", c.metrics_port):
            raise StartupError(f"the metrics port {c.metrics_port} is in use, e.g. by another orchestrator or "
                               f"`liveportrait up`; choose another with --metrics-port N (or $LIVEPORTRAIT_METRICS_PORT"
                               f"; 0 turns the metrics endpoint off)")
        if c.health_port and port_in_use(c.address, c.health_port):
            raise StartupError(f"the health port {c.health_port} is in use; choose another with --health-port N "
                               f"(or $LIVEPORTRAIT_HEALTH_PORT)")

    async def wait(self) -> None:
        await self.server.wait_for_termination()

    async def stop(self) -> None:
        """Drain: report NOT_SERVING first, refuse new calls with UNAVAILABLE, let running requests finish for up to
        ``drain_s``, then stop (what still runs is cancelled)."""
        if self._watcher:
            self._watcher.cancel()
        await self.health.enter_graceful_shutdown()
        if self.service:
            self.service.draining = True
            deadline = time.monotonic() + self.config.drain_s
            admission = self.service.admission
            live = self.service.live_streams  # live streams end themselves with UNAVAILABLE within a second
            while admission.running + admission.waiting + live.active and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            if admission.running + admission.waiting:
                log.warning("drain time over: cancelling %d running request(s)", admission.running)
            await self.service.end_calls()  # UNAVAILABLE in the project's words, not gRPC's "Cancelling all calls"
        if self.server:
            await self.server.stop(1.0)
        if self.health_server:
            await self.health_server.stop(0)
        if self.runner:
            await self.runner.close()
        if self._metrics_server:
            self._metrics_server.shutdown()
        if self.quota_store is not None:
            await self.quota_store.close()
        self.spool.close()  # what a cancelled request was still writing goes with it

    async def _watch_triton(self) -> None:
        """NOT_SERVING while Triton or one of the models is not ready."""
        while True:
            ready, reason = await self.runner.ready(self.config.models)
            if ready and not self.state.weights:
                self.state.weights = await self.runner.model_parameter("render_i420", "weights") or ""
                if self.state.weights.startswith("synthetic"):
                    log.warning("the served models have synthetic weights: %s", self.state.weights)
            if ready != self.state.ready:
                log.info("Triton %s: %s", "ready" if ready else "not ready", reason)
            self.state.ready = ready
            await self._set_health(ready)
            await asyncio.sleep(self.config.health_interval_s)

    async def _set_health(self, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", SERVICE_NAME):
            await self.health.set(name, status)


async def serve(config: ServerConfig) -> None:
    cv2.setNumThreads(config.opencv_threads or -1)  # OpenCV: -1 one thread per core (its 0 is one thread)
    orchestrator = Orchestrator(config)
    await orchestrator.start()
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()
    log.info("shutting down: draining running requests for up to %.0f s", config.drain_s)
    await orchestrator.stop()


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    try:
        asyncio.run(serve(config))
    except StartupError as exc:  # one line, no traceback
        print(f"liveportrait-orchestrator: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
