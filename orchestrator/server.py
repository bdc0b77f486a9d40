"""``liveportrait-orchestrator``: the asyncio gRPC server (PortraitAnimator + grpc.health.v1 + reflection + metrics).

Every setting is a flag with an environment-variable default (``LIVEPORTRAIT_<FLAG>``, e.g.
``LIVEPORTRAIT_TRITON_URL``); see ``--help``.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Collection

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from protos.liveportrait.v1 import portrait_animator_pb2 as pb
from protos.liveportrait.v1 import portrait_animator_pb2_grpc as pb_grpc

from .admission import Admission
from .auth import MAX_METADATA_BYTES, AuthInterceptor
from .face import FACE_STACKS
from .metrics import Metrics
from .keys import KeyFile, KeyFileError
from .ports import port_in_use
from .quota_store import FAIL_MODES, make_store
from .quotas import Quotas
from .service import Limits, PortraitAnimatorService, ServingState
from .spool import ProcessSpool
from .triton_client import TritonConfig, TritonRunner

log = logging.getLogger("liveportrait.orchestrator")
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["PortraitAnimator"].full_name
PIPELINE_MODELS = ("motion_extractor_u8", "render_i420", "stitching", "retarget_eye", "retarget_lip",
                   "appearance_feature_extractor", "warping_spade")  # the last two: EditPortrait
FACE_MODELS = {"mediapipe": ("face_detector", "face_landmarks"),
               "official": ("official_face_detector", "official_landmarks_106", "official_landmarks_203")}


class StartupError(RuntimeError):
    """The server cannot start (a port in use); the message is one line that names the flag to change."""


@dataclass(frozen=True)
class ServerConfig:
    address: str = "0.0.0.0"
    port: int = 50051
    metrics_port: int = 9100  # 0: no metrics endpoint
    triton: TritonConfig = field(default_factory=TritonConfig)
    limits: Limits = field(default_factory=Limits)
    max_concurrent: int = 2  # requests processed at once
    max_queued: int = 8  # requests waiting for a slot; beyond: RESOURCE_EXHAUSTED at once
    max_message_bytes: int = 32 * 1024 * 1024  # one gRPC message (setup with source image / template)
    face_stack: str = "mediapipe"
    spool_dir: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None  # mutual TLS: callers must present a certificate signed by this CA
    api_keys: Path | None = None  # JSON key file (orchestrator/keys.py); None: no authentication
    quota_redis_url: str | None = None  # per-key quotas shared by all replicas in Redis; None: in this process
    quota_redis_password_file: Path | None = None  # else $LIVEPORTRAIT_QUOTA_REDIS_PASSWORD (or in the URL)
    quota_redis_fail: str = "closed"  # Redis not answering: refuse calls that need a quota (closed) or serve them
    health_port: int = 0  # a plaintext port serving only grpc.health.v1 (kubelet probes when gRPC is TLS); 0: none
    health_interval_s: float = 2.0
    drain_s: float = 30.0  # on SIGTERM: how long running requests may take to finish (the pod's grace period)

    @property
    def models(self) -> tuple[str, ...]:
        return PIPELINE_MODELS + FACE_MODELS[self.face_stack]


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


def _env(name: str, default):
    value = os.environ.get(f"LIVEPORTRAIT_{name.upper()}")
    return default if value is None else type(default)(value) if default is not None else value


class _Flags:
    """``add_argument`` on a parser or argument group, less the flags in ``exclude``; remembers what it added."""

    def __init__(self, parser, exclude: Collection[str]):
        self.parser, self.exclude, self.added = parser, frozenset(exclude), []

    def add_argument(self, *flags: str, **kwargs) -> None:
        if flags[0] not in self.exclude:
            self.added.append(self.parser.add_argument(*flags, **kwargs))


def add_options(parser, exclude: Collection[str] = ()) -> list[argparse.Action]:
    """The orchestrator's flags, each with its ``LIVEPORTRAIT_<FLAG>`` default, added to ``parser`` (a parser or an
    argument group) less those in ``exclude``; returns the added actions. ``liveportrait up`` offers them all but the
    ones its embedded stack sets itself (``orchestrator.embedded.SET_BY_THE_STACK``) and passes them on."""
    d, dl, dt = ServerConfig(), Limits(), TritonConfig()
    p = _Flags(parser, exclude)
    p.add_argument("--address", default=_env("address", d.address))
    p.add_argument("--port", type=int, default=_env("port", d.port))
    p.add_argument("--metrics-port", type=int, default=_env("metrics_port", d.metrics_port), help="0 disables it")
    p.add_argument("--triton-url", default=_env("triton_url", dt.url), help="gRPC target of Triton")
    p.add_argument("--triton-timeout", type=float, default=_env("triton_timeout", dt.call_timeout_s),
                   help="deadline of one Triton call, seconds")
    p.add_argument("--triton-ssl", action="store_true", default=_env("triton_ssl", "").lower() in ("1", "true", "yes"))
    p.add_argument("--triton-root-certificates", default=_env("triton_root_certificates", None))
    p.add_argument("--max-concurrent", type=int, default=_env("max_concurrent", d.max_concurrent),
                   help="requests processed at once")
    p.add_argument("--max-queued", type=int, default=_env("max_queued", d.max_queued),
                   help="requests waiting for a slot (beyond: RESOURCE_EXHAUSTED)")
    p.add_argument("--max-message-bytes", type=int, default=_env("max_message_bytes", d.max_message_bytes),
                   help="bytes of one gRPC message (a setup with its source image or template)")
    p.add_argument("--max-source-bytes", type=int, default=_env("max_source_bytes", dl.max_source_bytes),
                   help="bytes of a source image")
    p.add_argument("--max-driving-bytes", type=int, default=_env("max_driving_bytes", dl.max_driving_bytes),
                   help="bytes of an uploaded video")
    p.add_argument("--max-frames", type=int, default=_env("max_frames", dl.max_frames),
                   help="frames of one animation")
    p.add_argument("--max-audio-seconds", type=float, default=_env("max_audio_seconds", dl.max_audio_s),
                   help="seconds of a driving audio (a longer one is refused from its header, or while decoding)")
    p.add_argument("--max-faces", type=int, default=_env("max_faces", dl.max_faces),
                   help=f"faces one AnimatePortrait animates (options.faces), 1 to {dl.chunk_frames}: the faces of a "
                        "frame are rendered in one Triton batch")
    p.add_argument("--max-request-seconds", type=float, default=_env("max_request_seconds", dl.max_request_s),
                   help="how long one request may run")
    p.add_argument("--edit-sessions", type=int, default=_env("edit_sessions", dl.edit_sessions),
                   help="EditPortrait: prepared sources kept (LRU)")
    p.add_argument("--edit-session-bytes", type=int, default=_env("edit_session_bytes", dl.edit_session_bytes),
                   help="EditPortrait: total bytes of the kept sources")
    p.add_argument("--edit-session-ttl", type=float, default=_env("edit_session_ttl", dl.edit_session_ttl_s),
                   help="EditPortrait: idle seconds before a session is dropped")
    p.add_argument("--live-max-streams", type=int, default=_env("live_max_streams", dl.live_max_streams),
                   help="AnimateStream: live streams open at once (beyond: RESOURCE_EXHAUSTED)")
    p.add_argument("--live-max-fps", type=float, default=_env("live_max_fps", dl.live_max_fps),
                   help="AnimateStream: driving frames per second per stream")
    p.add_argument("--live-max-session-seconds", type=float,
                   default=_env("live_max_session_seconds", dl.live_max_session_s),
                   help="AnimateStream: length of one stream")
    p.add_argument("--live-idle-timeout", type=float, default=_env("live_idle_timeout", dl.live_idle_timeout_s),
                   help="AnimateStream: seconds without a driving frame before the stream is ended")
    p.add_argument("--live-max-frame-bytes", type=int, default=_env("live_max_frame_bytes", dl.live_max_frame_bytes),
                   help="AnimateStream: bytes of one driving frame")
    p.add_argument("--live-max-frame-side", type=int, default=_env("live_max_frame_side", dl.live_max_frame_side),
                   help="AnimateStream: pixels per side of a driving frame")
    p.add_argument("--live-max-audio-ahead", type=float,
                   default=_env("live_max_audio_ahead", dl.live_max_audio_ahead_s),
                   help="AnimateStream voice mode: seconds of audio that may wait to be animated (a voice sent faster "
                        "than real time beyond it: RESOURCE_EXHAUSTED)")
    p.add_argument("--motion-cache-bytes", type=int, default=_env("motion_cache_bytes", dl.motion_cache_bytes),
                   help="driving motion kept in memory for repeated driving videos (same bytes and settings: no "
                        "decode, tracking or motion extraction), least recently used out; 0 turns it off")
    p.add_argument("--face-stack", choices=FACE_STACKS, default=_env("face_stack", d.face_stack))
    p.add_argument("--spool-dir", type=Path, default=_env("spool_dir", None),
                   help="where uploads are spooled, in a folder per orchestrator process that is removed at exit (and "
                        "at the next start when the process was killed) [<tmp>/liveportrait-spool-<uid>]")
    p.add_argument("--tls-cert", type=Path, default=_env("tls_cert", None), help="TLS: the server certificate (PEM)")
    p.add_argument("--tls-key", type=Path, default=_env("tls_key", None), help="TLS: its private key (PEM)")
    p.add_argument("--tls-client-ca", type=Path, default=_env("tls_client_ca", None),
                   help="mutual TLS: require client certificates signed by this CA (PEM)")
    p.add_argument("--api-keys", type=Path, default=_env("api_keys", None),
                   help="JSON key file: require an API key on every RPC but health and reflection "
                        "(python -m orchestrator.auth NAME makes one); re-read when it changes")
    p.add_argument("--quota-redis-url", default=_env("quota_redis_url", None),
                   help="keep the API keys' quotas in this Redis (redis://HOST:PORT/DB, rediss:// for TLS), shared by "
                        "every replica that uses it; unset: each process keeps its own")
    p.add_argument("--quota-redis-password-file", type=Path, default=_env("quota_redis_password_file", None),
                   help="a file holding the Redis password [$LIVEPORTRAIT_QUOTA_REDIS_PASSWORD]")
    p.add_argument("--quota-redis-fail", choices=FAIL_MODES, default=_env("quota_redis_fail", d.quota_redis_fail),
                   help="when Redis does not answer: closed refuses the calls that need a key's quota with "
                        "UNAVAILABLE, open serves them uncounted")
    p.add_argument("--health-port", type=int, default=_env("health_port", d.health_port),
                   help="also serve grpc.health.v1 in plaintext on this port (probes when gRPC uses TLS); 0: off")
    p.add_argument("--drain-seconds", type=float, default=_env("drain_seconds", d.drain_s),
                   help="on SIGTERM, how long running requests may take to finish")
    p.add_argument("--log-level", default=_env("log_level", "INFO"), help="DEBUG, INFO, WARNING or ERROR")
    return p.added


def check_options(p: argparse.ArgumentParser, a: argparse.Namespace) -> None:
    """What the flags' types do not check; ``p.error`` names the first problem."""
    dl = Limits()
    if bool(a.tls_cert) != bool(a.tls_key):
        p.error("--tls-cert and --tls-key go together")
    if a.tls_client_ca and not a.tls_cert:
        p.error("--tls-client-ca needs --tls-cert and --tls-key")
    if a.quota_redis_url and not a.api_keys:
        p.error("--quota-redis-url needs --api-keys (the quotas are the API keys')")
    if not 1 <= a.max_faces <= dl.chunk_frames:
        p.error(f"--max-faces must be between 1 and {dl.chunk_frames}")
    if a.live_max_streams < 0:
        p.error("--live-max-streams must be >= 0 (0: no live streams)")
    if a.motion_cache_bytes < 0:
        p.error("--motion-cache-bytes must be >= 0 (0: no motion cache)")
    for flag in ("live_max_fps", "live_max_session_seconds", "live_idle_timeout", "live_max_frame_bytes",
                 "live_max_frame_side", "live_max_audio_ahead"):
        if not getattr(a, flag) > 0:
            p.error(f"--{flag.replace('_', '-')} must be > 0")


def parse_args(argv: list[str] | None = None) -> ServerConfig:
    p = argparse.ArgumentParser(prog="liveportrait-orchestrator", description=__doc__.split("\n\n")[0])
    add_options(p)
    a = p.parse_args(argv)
    check_options(p, a)
    logging.basicConfig(level=a.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return ServerConfig(
        address=a.address, port=a.port, metrics_port=a.metrics_port,
        triton=TritonConfig(url=a.triton_url, call_timeout_s=a.triton_timeout, ssl=a.triton_ssl,
                            root_certificates=a.triton_root_certificates),
        limits=Limits(max_source_bytes=a.max_source_bytes, max_driving_bytes=a.max_driving_bytes,
                      max_frames=a.max_frames, max_faces=a.max_faces, max_request_s=a.max_request_seconds,
                      max_audio_s=a.max_audio_seconds,
                      edit_sessions=a.edit_sessions, edit_session_bytes=a.edit_session_bytes,
                      edit_session_ttl_s=a.edit_session_ttl, live_max_streams=a.live_max_streams,
                      live_max_fps=a.live_max_fps, live_max_session_s=a.live_max_session_seconds,
                      live_idle_timeout_s=a.live_idle_timeout, live_max_frame_bytes=a.live_max_frame_bytes,
                      live_max_frame_side=a.live_max_frame_side, live_max_audio_ahead_s=a.live_max_audio_ahead,
                      motion_cache_bytes=a.motion_cache_bytes),
        max_concurrent=a.max_concurrent, max_queued=a.max_queued, max_message_bytes=a.max_message_bytes,
        face_stack=a.face_stack, spool_dir=a.spool_dir, tls_cert=a.tls_cert, tls_key=a.tls_key,
        tls_client_ca=a.tls_client_ca, api_keys=a.api_keys, health_port=a.health_port, drain_s=a.drain_seconds,
        quota_redis_url=a.quota_redis_url, quota_redis_password_file=a.quota_redis_password_file,
        quota_redis_fail=a.quota_redis_fail)


async def serve(config: ServerConfig) -> None:
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
