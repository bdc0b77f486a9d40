"""The gateway's HTTP application (starlette): the WHIP routes, the WHEP routes of viewers, portrait uploads,
``/metrics`` and ``/healthz``; sessions bounded in count (one more: 503 with Retry-After) and in length
(``GatewayConfig.max_session_seconds``), viewers in count per session (``GatewayConfig.max_viewers``).

    app = gateway_app(GatewayConfig(target="orchestrator:50051", max_sessions=16))
    uvicorn.run(app, host="0.0.0.0", port=8080)
"""
from __future__ import annotations

import asyncio
import hmac
import logging
import math
import secrets
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from protos.liveportrait.v1 import portrait_animator_pb2_grpc as pb_grpc

from ..channel import ChannelSettings
from ..live import FORMATS, LiveStream, live_setup
from ..messages import animation_options, audio_options
from .metrics import GatewayMetrics
from .ports import restrict_udp_ports
from .rtp import install as complete_frames_on_marker
from .session import CameraDriver, GatewaySession
from .signalling import (
    HttpError, IceServer, Portraits, bearer_key, check_offer, received_kinds, rpc_error, unauthorized,
)
from .viewers import Viewer
from .voice import VoiceDriver

complete_frames_on_marker()  # frames decoded when complete (client/gateway/rtp.py)
log = logging.getLogger("liveportrait.gateway")


@dataclass
class GatewayConfig:
    target: str = "localhost:50051"  # the orchestrator's gRPC API
    root_certificates: Path | None = None  # TLS to the orchestrator (None: plaintext)
    client_cert: Path | None = None
    client_key: Path | None = None
    ice_servers: list[IceServer] = field(default_factory=list)
    max_sessions: int = 8
    max_session_seconds: float = 1800.0
    max_viewers: int = 4  # WHEP viewers of one session at once
    connect_timeout_s: float = 30.0
    retry_after_s: int = 5
    default_fps: float = 25.0
    input_format: str = "jpeg"  # driving frames to the orchestrator (jpeg: ~20x fewer bytes than i420)
    output_format: str = "jpeg"  # animated frames from it
    udp_ports: tuple[int, int] | None = None  # ICE host candidates bind in this range (None: any free port)


class Gateway:
    """The sessions and what they share."""

    def __init__(self, config: GatewayConfig, metrics: GatewayMetrics | None = None):
        self.config = config
        self.metrics = metrics or GatewayMetrics()
        self.portraits = Portraits()
        self.sessions: dict[str, GatewaySession] = {}
        self.viewers: dict[str, Viewer] = {}
        self.pending = 0  # offers being answered (they hold a place too)

    def _count(self) -> None:
        self.metrics.sessions.set(len(self.sessions))
        self.metrics.viewers.set(len(self.viewers))

    def _ended(self, session: GatewaySession) -> None:
        self.sessions.pop(session.id, None)
        self._count()

    def _rtc_configuration(self) -> RTCConfiguration:
        return RTCConfiguration(iceServers=[RTCIceServer(urls=s.url, username=s.username, credential=s.credential)
                                            for s in self.config.ice_servers])

    def _channel(self, key: str | None) -> grpc.aio.Channel:
        c = self.config  # the caller's key, never the gateway's own environment's (LIVEPORTRAIT_API_KEY)
        return ChannelSettings(c.target, c.root_certificates, key, c.client_cert, c.client_key).aio_channel()

    async def offer(self, request: Request) -> Response:
        c = self.config
        if len(self.sessions) + self.pending >= c.max_sessions:
            raise HttpError(503, f"the gateway already holds {c.max_sessions} sessions, its limit; retry later (or "
                                 "on another replica)", {"Retry-After": str(c.retry_after_s)})
        self.pending += 1
        try:
            return await self._answer(request)
        finally:
            self.pending -= 1

    async def _answer(self, request: Request) -> Response:
        c = self.config
        key = bearer_key(request.headers.get("authorization"))
        sdp = check_offer(request.headers.get("content-type"), await request.body())
        portrait_id = request.query_params.get("portrait")
        portrait = self.portraits.get(portrait_id)
        query = query_options(request, c.default_fps)
        session_id = secrets.token_urlsafe(16)
        pc = RTCPeerConnection(self._rtc_configuration())
        channel = self._channel(key)
        stub = pb_grpc.PortraitAnimatorStub(channel)
        if query.mode == "voice":
            stream = LiveStream(stub, live_setup(portrait, None, c.output_format, options=query.options,
                                                 voice=query.voice, drop_late_frames=query.drop_late_frames))
            driver = VoiceDriver(stream, self.metrics)
        else:
            stream = LiveStream(stub, live_setup(portrait, query.fps, c.output_format, options=query.options),
                                c.input_format)
            driver = CameraDriver(stream, query.fps, self.metrics)
        session = GatewaySession(session_id, pc, channel, stream, driver, self.metrics, self._ended,
                                 c.max_session_seconds, c.connect_timeout_s, key, portrait_id)
        try:
            await set_offer(pc, sdp)
            if session.incoming is None:
                raise HttpError(400, NOTHING_SENT[query.mode])
            session.attach(received_kinds(sdp))  # none: ingest only (sendonly), watched over WHEP
            try:
                await stream.start()  # the orchestrator checks the key, prepares the portrait, takes a stream slot
            except grpc.aio.AioRpcError as exc:
                raise rpc_error(exc, c.retry_after_s) from None
            await pc.setLocalDescription(await pc.createAnswer())
        except BaseException:
            stream.cancel()
            await pc.close()
            await channel.close()
            raise
        self.sessions[session_id] = session
        self._count()
        session.start()
        return self._answered(request, pc, f"whip/{session_id}")

    def _answered(self, request: Request, pc: RTCPeerConnection, resource: str) -> Response:
        """201 with the SDP answer, the new resource's ``Location`` and a ``Link`` per ICE server."""
        root = request.scope.get("root_path", "")  # the gateway mounted under a path (the web page's /webrtc)
        headers = {"Location": f"{root}/{resource}", "ETag": f'"{resource.rsplit("/", 1)[1]}"'}
        links = [s.link() for s in self.config.ice_servers]
        if links:
            headers["Link"] = ", ".join(links)
        return Response(pc.localDescription.sdp, 201, headers, media_type="application/sdp")

    async def watch(self, request: Request) -> Response:
        """``POST /whep?session=ID`` (or ``?portrait=ID``): a viewer of a session (``viewers``)."""
        c = self.config
        if c.max_viewers == 0:
            raise HttpError(403, "this gateway serves no viewers (--max-viewers 0)")
        key = bearer_key(request.headers.get("authorization"))
        sdp = check_offer(request.headers.get("content-type"), await request.body())
        session = self._watched(request)
        if session.key is not None and not hmac.compare_digest((key or "").encode(), session.key.encode()):
            if key is None:
                raise unauthorized("watching a session takes the API key it was started with (Bearer)")
            raise HttpError(403, "this API key did not start the session: watch it with the key that did")
        if len(session.viewers) >= c.max_viewers:
            raise HttpError(503, f"the session already has {c.max_viewers} viewers, the gateway's limit; retry later",
                            {"Retry-After": str(c.retry_after_s)})
        kinds = received_kinds(sdp) & session.kinds
        if "video" not in kinds:
            raise HttpError(400, "the WHEP offer receives no video: offer a recvonly video transceiver (and a "
                                 "recvonly audio one to hear a voice session)")
        pc = RTCPeerConnection(self._rtc_configuration())
        viewer = Viewer(secrets.token_urlsafe(16), pc, session, self._viewer_ended, c.connect_timeout_s)
        session.viewers[viewer.id] = viewer  # its place is held while the answer is made
        self.viewers[viewer.id] = viewer
        self._count()
        try:
            await set_offer(pc, sdp)
            viewer.attach(kinds)
            await pc.setLocalDescription(await pc.createAnswer())
        except BaseException:
            await viewer.close("its offer was refused")
            raise
        if session.closed:  # it ended while the answer was made
            await viewer.close("the session it watched ended")
            raise HttpError(404, "the session ended")
        viewer.start()
        return self._answered(request, pc, f"whep/{viewer.id}")

    def _watched(self, request: Request) -> GatewaySession:
        session_id, portrait_id = request.query_params.get("session"), request.query_params.get("portrait")
        if session_id:
            session = self.sessions.get(session_id)
            if session is None:
                raise HttpError(404, f"no session {session_id[:64]!r} here (it ended, or was never started here)")
            return session
        if portrait_id:
            animating = [s for s in self.sessions.values() if s.portrait_id == portrait_id]
            if not animating:
                raise HttpError(404, f"no session animates portrait {portrait_id[:64]!r} here now: start one with "
                                     "POST /whip?portrait=<id>")
            return max(animating, key=lambda s: s.started)
        raise HttpError(400, "name the session to watch: ?session=<id> (the last part of its WHIP Location) or "
                             "?portrait=<id> (the newest session animating it)")

    def _viewer_ended(self, viewer: Viewer) -> None:
        viewer.session.viewers.pop(viewer.id, None)
        self.viewers.pop(viewer.id, None)
        self._count()

    async def unwatch(self, request: Request) -> Response:
        viewer = self.viewers.get(request.path_params["viewer"])
        if viewer is None:
            raise HttpError(404, "no such viewer (it ended, or was never started here)")
        await viewer.close("DELETE by the viewer")
        return PlainTextResponse("viewer ended\n")

    async def delete(self, request: Request) -> Response:
        session = self.sessions.get(request.path_params["session"])
        if session is None:
            raise HttpError(404, "no such session (it ended, or was never started here)")
        await session.close("DELETE by the peer", "deleted")
        return PlainTextResponse("session ended\n")

    async def upload(self, request: Request) -> Response:
        portrait_id = self.portraits.add(request.headers.get("content-type"), await request.body())
        root = request.scope.get("root_path", "")
        return JSONResponse({"id": portrait_id}, 201, {"Location": f"{root}/portraits/{portrait_id}"})

    async def close_all(self) -> None:
        await asyncio.gather(*(s.close("the gateway is shutting down", "shutdown") for s in list(self.sessions.values())))


async def set_offer(pc: RTCPeerConnection, sdp: str) -> None:
    """The peer's offer on ``pc``; 400 in words when aiortc cannot use it."""
    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
    except Exception as exc:  # aiortc's parser: ValueError, KeyError, ... on a malformed offer
        raise HttpError(400, f"the SDP offer could not be used: {str(exc)[:200] or type(exc).__name__}") from None


NOTHING_SENT = {"camera": "the SDP offer sends no video: send the camera as a video track (sendrecv)",
                "voice": "the SDP offer sends no audio: in voice mode send the microphone as an audio track (sendrecv "
                         "to hear the voice back in step with the portrait)"}
# ?name= -> the AudioOptions field's type (eye_open and eye_ball are the library's and the CLI's only)
VOICE_OPTIONS = {"emotion": str, "sampling_steps": int, "guidance": float, "seed": int, "eye_blinks": bool,
                 "head_motion": float}


@dataclass
class QueryOptions:
    """What the offer's query asks for besides the portrait."""

    mode: str  # camera (the peer's video drives) or voice (the peer's audio drives)
    fps: float  # camera mode's driving rate
    options: object  # AnimationOptions
    voice: object = None  # voice mode's AudioOptions
    drop_late_frames: bool = True  # voice mode: real-time pacing (a frame a block behind the voice is skipped)


def query_options(request: Request, default_fps: float) -> QueryOptions:
    """``?fps=25&smooth=1&driving_multiplier=1.2...``: the stream's rate and animation options by name;
    ``mode=voice`` with ``emotion``, ``sampling_steps``, ``guidance``, ``seed``, ``eye_blinks``, ``head_motion``
    (the voice's ``AudioOptions``) and ``drop_late_frames`` (default true)."""
    params = dict(request.query_params)
    params.pop("portrait", None)
    mode = params.pop("mode", "camera")
    if mode not in NOTHING_SENT:
        raise HttpError(400, f"bad query option: mode is camera (the default) or voice, not {mode[:40]!r}")
    voice = {name: params.pop(name) for name in list(params) if name in VOICE_OPTIONS or name == "drop_late_frames"}
    if mode == "camera" and voice:
        raise HttpError(400, f"bad query option: {', '.join(voice)} apply to the voice mode (add mode=voice)")
    if mode == "voice" and "fps" in params:
        raise HttpError(400, "bad query option: the voice mode answers 25 frames per second of audio: leave fps out")
    try:
        fps = float(params.pop("fps", default_fps))
        if not math.isfinite(fps) or fps <= 0:
            raise ValueError(f"fps is the camera's frames per second, a number > 0, not {fps:g}")
        options = {name: parse_value(value) for name, value in params.items()}
        smooth = options.pop("smooth", None)
        if smooth:
            options["smoothing"] = True
        query = QueryOptions(mode, fps, animation_options(**options))
        if mode == "voice":
            late = voice.pop("drop_late_frames", "true")
            query.drop_late_frames = typed(bool, "drop_late_frames", late)
            query.voice = audio_options(**{name: typed(VOICE_OPTIONS[name], name, value)
                                           for name, value in voice.items()})
        return query
    except (TypeError, ValueError) as exc:
        raise HttpError(400, f"bad query option: {str(exc)[:200]}") from None


def typed(kind: type, name: str, value: str):
    """A query value as ``kind`` (bool: true/false, 1/0, yes/no, on/off; int: not negative); ValueError naming
    ``name`` otherwise."""
    if kind is bool:
        parsed = parse_value(value)
        if isinstance(parsed, bool):
            return parsed
    else:
        try:
            parsed = kind(value)
            if kind is not int or parsed >= 0:
                return parsed
        except ValueError:
            pass
    what = {bool: "true/false", int: "whole number of at least 0", float: "number"}.get(kind, kind.__name__)
    raise ValueError(f"{name}={value[:40]!r} is not a {what}")


def parse_value(value: str):
    lowered = value.lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def gateway_app(config: GatewayConfig, metrics: GatewayMetrics | None = None) -> Starlette:
    if config.input_format not in FORMATS or config.output_format not in FORMATS:
        raise ValueError(f"frame formats are {', '.join(FORMATS)}")
    gateway = Gateway(config, metrics)

    def handled(method):
        async def endpoint(request: Request) -> Response:
            try:
                response = await method(request)
            except HttpError as exc:
                response = PlainTextResponse(exc.message + "\n", exc.status, exc.headers)
            if method == gateway.offer:
                gateway.metrics.offers.labels(str(response.status_code)).inc()
            elif method == gateway.watch:
                gateway.metrics.viewer_offers.labels(str(response.status_code)).inc()
            return response
        return endpoint

    async def not_allowed(request: Request) -> Response:
        return PlainTextResponse("PATCH (trickle ICE, ICE restart) is not supported: the answer carries all the "
                                 "gateway's candidates; start a new session instead\n", 405,
                                 {"Allow": "DELETE"})

    async def metrics_endpoint(request: Request) -> Response:
        return Response(generate_latest(gateway.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def healthz(request: Request) -> Response:
        return PlainTextResponse(f"ok: {len(gateway.sessions)} of {config.max_sessions} sessions, "
                                 f"{len(gateway.viewers)} viewers\n")

    @asynccontextmanager
    async def lifespan(app):
        if config.udp_ports:
            restrict_udp_ports(asyncio.get_running_loop(), *config.udp_ports)
        yield
        await gateway.close_all()

    app = Starlette(routes=[
        Route("/whip", handled(gateway.offer), methods=["POST"]),
        Route("/whip/{session}", handled(gateway.delete), methods=["DELETE"]),
        Route("/whip/{session}", not_allowed, methods=["PATCH"]),
        Route("/whep", handled(gateway.watch), methods=["POST"]),
        Route("/whep/{viewer}", handled(gateway.unwatch), methods=["DELETE"]),
        Route("/whep/{viewer}", not_allowed, methods=["PATCH"]),
        Route("/portraits", handled(gateway.upload), methods=["POST"]),
        Route("/metrics", metrics_endpoint),
        Route("/healthz", healthz),
    ], lifespan=lifespan)
    app.state.gateway = gateway
    return app
