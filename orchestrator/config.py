"""The orchestrator's configuration: ``ServerConfig`` and the command line that makes it (every setting a flag with
an environment-variable default, ``LIVEPORTRAIT_<FLAG>``). ``liveportrait up`` offers the same flags
(``add_options``) and passes them on to the orchestrator it starts."""
from __future__ import annotations

import argparse
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Collection

from .face import FACE_STACKS
from .quota_store import FAIL_MODES
from .service import Limits
from .triton_client import TritonConfig

DESCRIPTION = ("the LivePortrait orchestrator: the asyncio gRPC server (PortraitAnimator, grpc.health.v1, reflection, "
               "Prometheus metrics); every flag has a LIVEPORTRAIT_<FLAG> environment default")
PIPELINE_MODELS = ("motion_extractor_u8", "render_i420", "stitching", "retarget_eye", "retarget_lip",
                   "appearance_feature_extractor", "warping_spade")  # the last two: EditPortrait
FACE_MODELS = {"mediapipe": ("face_detector", "face_landmarks"),
               "official": ("official_face_detector", "official_landmarks_106", "official_landmarks_203")}



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
    # threads of one OpenCV call (warps, resizes, colour conversions of one frame): 1, the requests and frames in
    # flight being the parallelism (less CPU per frame than splitting each small image across every core); 0: all
    opencv_threads: int = 1

    @property
    def models(self) -> tuple[str, ...]:
        return PIPELINE_MODELS + FACE_MODELS[self.face_stack]


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
    p.add_argument("--opencv-threads", type=int, default=_env("opencv_threads", d.opencv_threads),
                   help="threads of one OpenCV call (1: least CPU per frame, the requests in flight being the "
                        "parallelism; 0: one per core)")
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
    if a.opencv_threads < 0:
        p.error("--opencv-threads must be >= 0 (0: one per core)")
    if a.motion_cache_bytes < 0:
        p.error("--motion-cache-bytes must be >= 0 (0: no motion cache)")
    for flag in ("live_max_fps", "live_max_session_seconds", "live_idle_timeout", "live_max_frame_bytes",
                 "live_max_frame_side", "live_max_audio_ahead"):
        if not getattr(a, flag) > 0:
            p.error(f"--{flag.replace('_', '-')} must be > 0")


def parse_args(argv: list[str] | None = None) -> ServerConfig:
    p = argparse.ArgumentParser(prog="liveportrait-orchestrator", description=DESCRIPTION)
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
        quota_redis_fail=a.quota_redis_fail, opencv_threads=a.opencv_threads)
