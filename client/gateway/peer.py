"""A WHIP peer in Python (aiortc): plays frames as a camera to the gateway, shows (receives) the animated frames and
measures each one's capture -> display latency; and a WHEP viewer of a session. Used by the tests and
``load_tests/webrtc.py``; also a minimal example of the protocol for other clients.

    async with WhipPeer("http://127.0.0.1:8080", portrait_id, frames, fps=10, api_key=key) as peer:
        await peer.wait_frames(20)
    print(peer.latencies())  # seconds, one per displayed frame matched to the frame it was animated from

Matching: the camera stamps frame i with pts i x 90000 / fps from 0 (as its receiver sees it: pts are relative to
the first frame), and asks for the ``timing`` data channel, on which the gateway announces each animated frame's
``out_pts`` (its pts as received here) and ``in_pts`` (the driving frame's pts as received there).
"""
from __future__ import annotations

import asyncio
import fractions
import json
import time
import urllib.error
import urllib.request
from urllib.parse import urljoin

import av
import numpy as np
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from .session import CLOCK_RATE
from .rtp import install as complete_frames_on_marker

complete_frames_on_marker()  # frames shown when complete (client/gateway/rtp.py)
TIME_BASE = fractions.Fraction(1, CLOCK_RATE)


def http(method: str, url: str, body: bytes | None = None, content_type: str | None = None,
         api_key: str | None = None, timeout: float = 60) -> tuple[int, dict[str, str], bytes]:
    """A blocking HTTP call: (status, headers by lower-case name, body), HTTP errors included."""
    headers = {"Content-Type": content_type} if content_type else {}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    request = urllib.request.Request(url, body, headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()


def upload_portrait(base_url: str, image: bytes, api_key: str | None = None, content_type: str = "image/jpeg") -> str:
    status, _, body = http("POST", f"{base_url}/portraits", image, content_type, api_key)
    if status != 201:
        raise RuntimeError(f"portrait upload: HTTP {status}: {body.decode(errors='replace').strip()}")
    return json.loads(body)["id"]


class CameraTrack(MediaStreamTrack):
    """``frames`` (RGB) played in a loop at ``fps`` as a live camera, in I420 as cameras give them (converted once);
    ``captured[pts]`` = when frame pts was captured (monotonic seconds)."""

    kind = "video"

    def __init__(self, frames: list[np.ndarray], fps: float):
        super().__init__()
        self.frames = [av.VideoFrame.from_ndarray(f, format="rgb24").reformat(format="yuv420p").to_ndarray()
                       for f in frames]
        self.fps = fps
        self.index = 0
        self.start: float | None = None
        self.captured: dict[int, float] = {}

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self.start is None:
            self.start = time.monotonic()
        due = self.start + self.index / self.fps
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        frame = av.VideoFrame.from_ndarray(self.frames[self.index % len(self.frames)], format="yuv420p")
        frame.pts, frame.time_base = round(self.index * CLOCK_RATE / self.fps), TIME_BASE
        self.captured[frame.pts] = time.monotonic()
        self.index += 1
        return frame


class GatewayPeer:
    """What every test peer of the gateway does: its offer (``start``) with the ``timing`` data channel, the animated
    frames it is sent (``displayed``: out pts -> arrival, monotonic seconds; the first few kept in ``shown``), the
    audio it is sent (``heard``), the gateway's timing messages (``announced``) and ``close`` (DELETE, then the peer
    connection). ``mode``: the query's mode (``voice``; empty: camera)."""

    mode = ""
    timing = True  # ask for the timing data channel

    def __init__(self, base_url: str, portrait_id: str, api_key: str | None = None, query: str = ""):
        self.base_url, self.portrait_id, self.api_key, self.query = base_url, portrait_id, api_key, query
        self.pc = RTCPeerConnection()
        self.location: str | None = None
        self.answer = ""  # the gateway's SDP answer
        self.displayed: dict[int, float] = {}
        self.shown: list[np.ndarray] = []
        self.heard: list[tuple[float, np.ndarray]] = []  # (arrival, 48 kHz mono float32) per received audio frame
        self.announced: dict[int, dict] = {}  # out pts -> the gateway's timing message
        self._arrived = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        if self.timing:
            self.pc.createDataChannel("timing").on("message", self._on_timing)
        self.pc.on("track", self._on_track)

    async def __aenter__(self):
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    def _on_timing(self, message: str) -> None:
        stamp = json.loads(message)
        self.announced[stamp["out_pts"]] = stamp

    def _on_track(self, track: MediaStreamTrack) -> None:
        listen = self._show if track.kind == "video" else self._listen
        self._tasks.append(asyncio.create_task(listen(track)))

    async def _show(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await track.recv()
                self.displayed[frame.pts] = time.monotonic()
                if len(self.shown) < 4:
                    self.shown.append(frame.to_ndarray(format="rgb24"))
                self._arrived.set()
        except MediaStreamError:
            self._video_ended()

    async def _listen(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await track.recv()
                arrived = time.monotonic()
                data = frame.to_ndarray().astype(np.float32) / 32768  # s16 interleaved
                self.heard.append((arrived, data.reshape(-1, frame.layout.nb_channels).mean(axis=1)))
        except MediaStreamError:
            pass

    def _video_ended(self) -> None:
        """The gateway's video track ended."""

    def _held(self) -> bool:
        """Whether the gateway still holds the session (``close`` deletes it)."""
        return True

    def url(self) -> str:
        """Where the offer goes."""
        query = "".join(f"&{part}" for part in (f"mode={self.mode}" if self.mode else "", self.query) if part)
        return f"{self.base_url}/whip?portrait={self.portrait_id}{query}"

    async def start(self) -> None:
        """POST the offer; RuntimeError with the gateway's status and words when it refuses."""
        url = self.url()
        await self.pc.setLocalDescription(await self.pc.createOffer())
        status, headers, body = await asyncio.to_thread(http, "POST", url, self.pc.localDescription.sdp.encode(),
                                                        "application/sdp", self.api_key)
        if status != 201:
            await self.pc.close()
            raise RuntimeError(f"HTTP {status}: {body.decode(errors='replace').strip()}")
        self.location, self.answer = headers["location"], body.decode()
        await self.pc.setRemoteDescription(RTCSessionDescription(self.answer, "answer"))

    async def wait_frames(self, count: int, timeout: float = 60) -> None:
        """Until ``count`` animated frames were shown (TimeoutError otherwise)."""
        async def wait():
            while len(self.displayed) < count:
                self._arrived.clear()
                await self._arrived.wait()
        await asyncio.wait_for(wait(), timeout)

    async def close(self, delete: bool = True) -> None:
        """DELETE the session (frees it at once) when it is still held, then close the peer connection."""
        if delete and self.location and self._held():
            await asyncio.to_thread(http, "DELETE", urljoin(self.base_url, self.location), api_key=self.api_key)
        self.location = None
        for task in self._tasks:
            task.cancel()
        await self.pc.close()


class WhipPeer(GatewayPeer):
    """A camera-mode session with the gateway: ``frames`` played as the camera at ``fps``; with ``receive=False``
    ingest only (sendonly, as OBS's WHIP output), with ``codec`` (e.g. ``H264``) the camera sent in that codec only."""

    def __init__(self, base_url: str, portrait_id: str, frames: list[np.ndarray], fps: float = 10,
                 api_key: str | None = None, query: str = "", receive: bool = True, codec: str | None = None):
        super().__init__(base_url, portrait_id, api_key, query)
        self.camera = CameraTrack(frames, fps)
        transceiver = self.pc.addTransceiver(self.camera, direction="sendrecv" if receive else "sendonly")
        if codec:
            transceiver.setCodecPreferences([c for c in RTCRtpSender.getCapabilities("video").codecs
                                             if c.mimeType.lower() == f"video/{codec.lower()}"])

    def matched(self) -> list[tuple[float, dict]]:
        """(capture -> display in seconds, the gateway's timing message) of each shown frame the gateway announced,
        in display order."""
        out = []
        for pts, shown in sorted(self.displayed.items()):
            stamp = self.announced.get(pts)
            captured = self.camera.captured.get(stamp["in_pts"]) if stamp else None
            if captured is not None:
                out.append((shown - captured, stamp))
        return out

    def latencies(self) -> list[float]:
        """Capture -> display (seconds) of each shown frame the gateway announced, in display order."""
        return [latency for latency, _ in self.matched()]


class WhepViewer(GatewayPeer):
    """A viewer of a session over WHEP: ``watch`` is ``session=ID`` (the last part of the session's WHIP Location)
    or ``portrait=ID``; receives its video, and its audio with ``audio=True`` (a voice session)."""

    timing = False

    def __init__(self, base_url: str, watch: str, api_key: str | None = None, audio: bool = False):
        super().__init__(base_url, "", api_key)
        self.watch = watch
        self.pc.addTransceiver("video", direction="recvonly")
        if audio:
            self.pc.addTransceiver("audio", direction="recvonly")

    def url(self) -> str:
        return f"{self.base_url}/whep?{self.watch}"
