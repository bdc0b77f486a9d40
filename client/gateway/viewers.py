"""WHEP viewers: more peers watching a session's animated portrait (and hearing the voice, in voice mode). An
ingest-only sender (OBS's WHIP output: its camera or microphone sendonly) gets nothing back on its own connection;
a browser or a player watches it with ``POST /whep?session=ID`` (the id is the last part of the session's WHIP
``Location``) or ``?portrait=ID`` (the newest session animating that portrait), with the API key the session was
started with. Each viewer is a peer connection of its own, fed by the session's ``Fanout``s (the newest frame each:
a slow viewer drops frames, never delays the others); it ends when its connection closes or fails, ICE does not
connect in time, on ``DELETE /whep/VIEWER``, or with its session.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Callable

from aiortc import MediaStreamTrack, RTCPeerConnection

from .session import connected

log = logging.getLogger("liveportrait.gateway")


class Viewer:
    """One WHEP viewer of ``session`` (a ``session.GatewaySession``): ``start`` after the answer was made; ``close``
    is idempotent."""

    def __init__(self, viewer_id: str, pc: RTCPeerConnection, session, on_end: Callable[["Viewer"], None],
                 connect_timeout_s: float = 30.0):
        self.id = viewer_id
        self.pc = pc
        self.session = session
        self.on_end = on_end
        self.connect_timeout_s = connect_timeout_s
        self.tracks: list[MediaStreamTrack] = []
        self.closed = False
        self._task: asyncio.Task | None = None
        pc.on("connectionstatechange", self._on_state)

    def attach(self, kinds: set[str]) -> None:
        """The session's outgoing tracks of ``kinds``, each on the offer's transceiver of its kind."""
        self.tracks = self.session.subscribe(kinds)
        for track in self.tracks:
            self.pc.addTrack(track)

    def start(self) -> None:
        self._task = asyncio.create_task(self._connect_limit())

    async def _on_state(self) -> None:
        if self._task is not None and self.pc.connectionState in ("failed", "closed"):
            await self.close(f"the viewer's peer connection {self.pc.connectionState}")

    async def _connect_limit(self) -> None:
        if not await connected(self.pc, self.connect_timeout_s):
            await self.close(f"ICE did not connect within {self.connect_timeout_s:g} s")

    async def close(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        log.info("viewer %s of session %s ended: %s", self.id, self.session.id, reason)
        for track in self.tracks:
            track.stop()
        self.on_end(self)
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()
        await self.pc.close()
