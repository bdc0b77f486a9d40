"""The HTTP side of the gateway: WHIP-style offer/answer (RFC 9725), portrait uploads, API keys, ICE servers, and
every refusal as an HTTP status with a sentence.

    POST /portraits          image bytes (image/jpeg, image/png)  -> 201 {"id": ...}
    POST /whip?portrait=ID   application/sdp offer (and the animation's query options) -> 201 + SDP answer,
                             Location: /whip/SESSION, Link: <stun:...>; rel="ice-server" per configured server.
                             Camera mode (the default): the offer sends video, and receives the animated video
                             back (sendrecv) or not (sendonly, ingest only: OBS). mode=voice: the offer sends audio
                             (sendrecv to hear the voice back) and receives video (recvonly) or not (sendonly)
    DELETE /whip/SESSION     ends the session and frees its stream at once -> 200
    PATCH /whip/SESSION      405 (no trickle ICE or ICE restart: the answer carries all the gateway's candidates)
    POST /whep?session=ID    (or ?portrait=ID: the newest session animating it) application/sdp offer receiving video
                             (and audio, for a voice) -> 201 + SDP answer, Location: /whep/VIEWER: a viewer of the
                             session's animated portrait (WHEP), with the session's API key
    DELETE /whep/VIEWER      ends the viewer -> 200

The API key is the gRPC API's: ``Authorization: Bearer <key>`` is forwarded to the orchestrator, which decides
(UNAUTHENTICATED -> 401, PERMISSION_DENIED -> 403, a key's quota -> 429 with Retry-After, the orchestrator's stream
limit -> 503 with Retry-After, a refused portrait or option -> 400).
"""
from __future__ import annotations

import math
import secrets
from collections import OrderedDict
from dataclasses import dataclass, field

import grpc

MAX_KEY_CHARS = 256
MAX_OFFER_BYTES = 64 * 1024
IMAGE_TYPES = ("image/jpeg", "image/png")
IMAGE_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")  # how a JPEG and a PNG file begin


class HttpError(Exception):
    """A refusal: the status, a sentence, and headers (Retry-After, WWW-Authenticate)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


@dataclass(frozen=True)
class IceServer:
    """One STUN/TURN server (the shape of WebRTC's ``RTCIceServer``)."""

    url: str
    username: str | None = None
    credential: str | None = field(default=None, repr=False)

    def link(self) -> str:
        """The WHIP ``Link`` header value (RFC 9725, section 4.6)."""
        value = f'<{self.url}>; rel="ice-server"'
        if self.username:
            value += f'; username="{self.username}"; credential="{self.credential or ""}"; credential-type="password"'
        return value

    def browser(self) -> dict:
        """As a browser's ``RTCPeerConnection`` takes it (``iceServers`` entries)."""
        return {"urls": self.url, **({"username": self.username, "credential": self.credential}
                                     if self.username else {})}


def ice_servers(urls: list[str], username: str | None = None, credential: str | None = None) -> list[IceServer]:
    """``--ice-server`` URLs (stun:, stuns:, turn:, turns:); the username and credential go with the TURN ones."""
    servers = []
    for url in urls:
        scheme = url.split(":", 1)[0].lower()
        if scheme not in ("stun", "stuns", "turn", "turns") or ":" not in url:
            raise ValueError(f"ICE server {url!r} is not a stun:, stuns:, turn: or turns: URL")
        turn = scheme.startswith("turn")
        if turn and not (username and credential):
            raise ValueError(f"the TURN server {url!r} needs a username and a credential (--ice-username, "
                             "--ice-credential or their environment variables)")
        servers.append(IceServer(url, username if turn else None, credential if turn else None))
    return servers


def bearer_key(authorization: str | None) -> str | None:
    """The API key of an ``Authorization: Bearer <key>`` header (None without one); 401 when it is malformed."""
    if authorization is None:
        return None
    scheme, _, key = authorization.strip().partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        raise unauthorized("the Authorization header is not of the form 'Bearer <key>'")
    if len(key) > MAX_KEY_CHARS or not (key.isascii() and key.isprintable()) or " " in key:
        raise unauthorized(f"the API key must be printable ASCII without spaces, at most {MAX_KEY_CHARS} characters")
    return key


def unauthorized(message: str) -> HttpError:
    return HttpError(401, message, {"WWW-Authenticate": 'Bearer realm="liveportrait"'})


def rpc_error(exc: grpc.aio.AioRpcError, retry_after_s: int) -> HttpError:
    """The orchestrator's refusal of a stream's setup, as an HTTP status with its words."""
    code, details = exc.code(), exc.details() or exc.code().name
    said = f"the orchestrator refused the stream ({code.name}): {details}"
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return unauthorized(said)
    if code == grpc.StatusCode.PERMISSION_DENIED:
        return HttpError(403, said)
    if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION):
        return HttpError(400, said)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        trailers = dict(exc.trailing_metadata() or ())
        if "retry-after-ms" in trailers:  # the key's quota: this caller waits
            seconds = max(1, math.ceil(int(trailers["retry-after-ms"]) / 1000))
            return HttpError(429, said, {"Retry-After": str(seconds)})
        return HttpError(503, said, {"Retry-After": str(retry_after_s)})  # the orchestrator's stream limit
    if code == grpc.StatusCode.UNAVAILABLE:
        return HttpError(503, f"the orchestrator is not reachable or draining: {details}",
                         {"Retry-After": str(retry_after_s)})
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return HttpError(504, said)
    return HttpError(502, said)


def check_offer(content_type: str | None, body: bytes) -> str:
    """The SDP offer's text; 415 or 400 in words otherwise."""
    if (content_type or "").split(";")[0].strip().lower() != "application/sdp":
        raise HttpError(415, "send the SDP offer with Content-Type: application/sdp")
    if len(body) > MAX_OFFER_BYTES:
        raise HttpError(413, f"the SDP offer is {len(body)} bytes; at most {MAX_OFFER_BYTES} are accepted")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise HttpError(400, "the SDP offer is not UTF-8 text") from None
    if not text.startswith("v=0"):
        raise HttpError(400, "the body is not an SDP offer (it must start with 'v=0')")
    return text


def received_kinds(sdp: str) -> set[str]:
    """The media kinds (audio, video) an SDP offer's sender receives on: sections sendrecv (the default) or
    recvonly. An ingest-only offer (OBS: sendonly) receives none."""
    kinds = set()
    for section in sdp.split("\nm=")[1:]:
        kind, _, rest = section.partition(" ")
        lines = {line.strip() for line in section.splitlines()}
        rejected = rest.split(" ", 1)[0] == "0" and "a=bundle-only" not in lines
        if kind in ("audio", "video") and not rejected and not lines & {"a=sendonly", "a=inactive"}:
            kinds.add(kind)
    return kinds


class Portraits:
    """Uploaded source portraits, held in memory: at most ``capacity`` (the oldest goes first) of at most
    ``max_bytes`` each. An id is 128 random bits that only its uploader learns; using it still takes a valid API
    key (the orchestrator checks the key when the stream starts)."""

    def __init__(self, capacity: int = 256, max_bytes: int = 10 * 1024 * 1024):
        self.capacity = capacity
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, bytes] = OrderedDict()

    def add(self, content_type: str | None, data: bytes) -> str:
        kind = (content_type or "").split(";")[0].strip().lower()
        if kind not in IMAGE_TYPES:
            raise HttpError(415, f"upload the portrait as {' or '.join(IMAGE_TYPES)} (Content-Type)")
        if not data:
            raise HttpError(400, "the portrait upload is empty")
        if len(data) > self.max_bytes:
            raise HttpError(413, f"the portrait is {len(data)} bytes; at most {self.max_bytes} are accepted")
        if not data.startswith(IMAGE_SIGNATURES):
            raise HttpError(400, "the portrait upload is not a JPEG or PNG file (it does not begin like one)")
        portrait_id = secrets.token_urlsafe(16)
        self._items[portrait_id] = data
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)
        return portrait_id

    def get(self, portrait_id: str | None) -> bytes:
        if not portrait_id:
            raise HttpError(400, "name the source portrait: POST it to /portraits, then ?portrait=<its id>")
        data = self._items.get(portrait_id)
        if data is None:
            raise HttpError(404, f"no portrait {portrait_id[:64]!r} here (never uploaded, or replaced by newer "
                                 "uploads); upload it again")
        return data
