"""The web page's **Live** tab: the browser camera (or microphone) animates a portrait through ``AnimateStream``.

Over WebRTC first (``client/web_webrtc.py``: camera or voice, the page's own process serving the gateway). Below it,
the fallback for a browser that cannot reach the page's process over UDP (no TURN server configured, a strict
firewall): the camera streamed through the page itself, which is this module. The browser streams its camera to
the page (Gradio webcam streaming: a JPEG every ``1 / FPS`` s once the previous one was answered); this process forwards each frame to the service over one live stream per browser session
(``client/live.py``) and shows the newest animated frame, with a read-out of the stream so far: latency from a frame's
arrival here to its animated frame's return (p50/p95, and the server's share), the frames per second achieved and the
frames dropped (the service keeps only the newest frame it has not started on: a slow stream drops frames rather than
falling behind). The source portrait is uploaded on the tab; the animation options are the Animate tab's (those of a
video's output, such as ``crf``, do not apply).

A stream starts with the first camera frame and ends when the browser leaves the page, when no frame came for
``IDLE_CLOSE_S`` (the camera was stopped), or when the source or an option changes (the next frame starts a new one).
A stream the service refused or ended is retried after ``RETRY_S`` while the camera runs; its error is shown.
"""
from __future__ import annotations

import asyncio
import math
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import gradio as gr
import grpc
import numpy as np

from .api import AsyncPortraitClient
from .live import LiveResult, LiveStats, LiveStream
from .live_cli import VIDEO_ONLY
from .web_options import animate_kwargs, error_text

FPS = 10.0  # camera frames sent per second (the CPU goal: one stream at 10 fps)
CAMERA = {"video": {"width": {"ideal": 640}, "height": {"ideal": 480}}}  # getUserMedia constraints
IDLE_CLOSE_S = 3.0  # no camera frame for this long: the stream is closed
RETRY_S = 5.0  # a refused or ended stream is started again after this long
TIME_LIMIT_S = 1800  # one camera streaming event (Gradio's bound; the service's session limit is the same by default)
KEEP_FILES = 8  # animated frames kept on disk per session (Gradio copies each into its cache when shown)


@dataclass
class PageStream:
    """The live stream of one browser session."""

    key: tuple  # the source and options it was started with
    folder: Path  # its animated frames, as JPEG files for the page
    client: AsyncPortraitClient | None = None
    stream: LiveStream | None = None
    reader: asyncio.Task | None = None
    stats: LiveStats | None = None  # of the last stream started (kept for the read-out after it ended)
    newest: LiveResult | None = None  # the newest animated frame with an image
    shown: int = -1  # the sequence number of the frame on the page
    error: str = ""
    ended_at: float = -math.inf  # when the stream last failed or ended
    last_frame: float = field(default_factory=time.monotonic)
    watcher: asyncio.Task | None = None
    told: str = ""  # the error already shown in a toast
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # held while a frame is handled, and while closing


def live_kwargs(values: dict) -> dict:
    """``AsyncPortraitClient.live`` options from the Animate tab's widgets (only those that differ from their
    defaults; a video's output options are left out)."""
    return {k: v for k, v in animate_kwargs(values).items() if k not in VIDEO_ONLY}


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.0f} ms"


def readout(page: PageStream) -> str:
    """The stream's figures so far (and its error, if any)."""
    lines = []
    if page.stats is not None:
        s = page.stats.summary()
        offered = s["sent"] + s["dropped_client"]
        dropped = s["dropped_server"] + s["dropped_client"]
        if s["results"] - s["no_face"] > 0:
            lat, server = s["latency_ms"], s["server_ms"]
            lines.append(f"latency p50 {_ms(lat['p50'])}, p95 {_ms(lat['p95'])} (frame here -> animated frame back; "
                         f"server p50 {_ms(server['p50'])}), {s['achieved_fps']:.1f} fps")
        else:
            lines.append("waiting for the first animated frame (a face must show on the camera)")
        waiting = max(0, offered - s["results"] - dropped)
        lines.append(f"{s['results']} of {offered} camera frames animated ({s['no_face']} without a face), "
                     f"{dropped} dropped ({s['drop_rate']:.0%})"
                     + (f", {waiting} on the way" if page.stream is not None else ", stream ended"))
    if page.error:
        lines.append(f"Live stream failed: {page.error}")
    return "\n".join(lines)


class LiveTab:
    """The tab's handlers and layout; ``connect()`` makes the page's asyncio client (with its credentials)."""

    def __init__(self, connect: Callable[[], AsyncPortraitClient], work_dir: Path, fps: float = FPS,
                 server: str = ""):
        self.connect = connect
        self.server = server  # for the words of a connection error
        self.work_dir = Path(work_dir)
        self.fps = fps
        self.pages: dict[str, PageStream] = {}  # by Gradio session
        self.ended: dict[str, str] = {}  # the read-out of a session's stream that ended, until shown
        self.option_names: list[str] = []

    async def frame(self, session: str, image: np.ndarray | None, source: str | None, values: dict):
        """One camera frame of a browser session -> (the newest animated frame's file, or no change; read-out)."""
        if image is None:
            return gr.update(), "no camera frame"
        if not source:
            return gr.update(), "upload a source portrait first"
        try:
            options = live_kwargs(values)
        except ValueError as exc:
            return gr.update(), f"error: {exc}"
        key = (source, repr(sorted(options.items())))
        page = self.pages.get(session)
        if page is not None and page.key != key:
            await self.stop(session)
            page = None
        if page is None:
            self.work_dir.mkdir(parents=True, exist_ok=True)
            page = self.pages[session] = PageStream(key, Path(tempfile.mkdtemp(dir=self.work_dir)))
            page.watcher = asyncio.create_task(self._close_when_idle(session, page))
        async with page.lock:
            if page.reader is not None and page.reader.done():
                await self._end(page)
            if page.stream is None and time.monotonic() - page.ended_at >= RETRY_S:
                await self._start(page, Path(source), options)
            if page.stream is not None:
                page.stream.send(image)
            page.last_frame = time.monotonic()
            if page.error and page.error != page.told:
                page.told = page.error
                gr.Warning(f"Live stream failed: {page.error}", title="Live stream failed")
            return self._shown(page), readout(page)

    async def stop(self, session: str) -> None:
        """End a browser session's stream (the frames still waiting are answered first)."""
        page = self.pages.pop(session, None)
        if page is None:
            return
        if page.watcher is not None and page.watcher is not asyncio.current_task():
            page.watcher.cancel()
        async with page.lock:  # a frame being handled (a stream starting) finishes first
            await self._end(page)
        shutil.rmtree(page.folder, ignore_errors=True)
        if page.stats is not None or page.error:
            self.ended[session] = readout(page)

    async def unload(self, request: gr.Request) -> None:
        """The browser left the page."""
        await self.stop(request.session_hash)
        self.ended.pop(request.session_hash, None)

    async def on_tick(self, request: gr.Request):
        """Every second: the final read-out once a session's stream has ended (the camera was stopped)."""
        text = self.ended.pop(request.session_hash, None)
        return gr.update() if text is None else text

    async def on_frame(self, request: gr.Request, image, source, *values):
        return await self.frame(request.session_hash, image, source, dict(zip(self.option_names, values)))

    # -- the stream ----------------------------------------------------------------------------------------------
    async def _start(self, page: PageStream, source: Path, options: dict) -> None:
        page.error = ""
        page.client = self.connect()
        try:
            page.stream = page.client.live(source, fps=self.fps, **options)
            await page.stream.start()  # the source is prepared when it returns
        except (grpc.RpcError, RuntimeError, ValueError, OSError) as exc:
            page.error = error_text(exc, self.server)
            await self._end(page)
            return
        page.stats, page.newest, page.shown = page.stream.stats, None, -1  # sequence numbers start again at 0
        page.reader = asyncio.create_task(self._read(page))

    async def _read(self, page: PageStream) -> None:
        try:
            async for result in page.stream:
                if result.image:
                    page.newest = result
        except grpc.RpcError as exc:
            page.error = error_text(exc, self.server)

    async def _end(self, page: PageStream) -> None:
        """Close the stream and the client (the figures stay for the read-out until the next start)."""
        stream, client, page.client = page.stream, page.client, None
        if stream is not None and stream.started is not None:
            try:
                await asyncio.wait_for(stream.close(), 5.0)
            except asyncio.TimeoutError:  # TimeoutError itself from Python 3.11
                stream.cancel()
        if page.reader is not None:
            await asyncio.gather(page.reader, return_exceptions=True)
            page.reader = None
        if client is not None:
            await client.close()
        page.stream = None
        page.ended_at = time.monotonic()

    async def _close_when_idle(self, session: str, page: PageStream) -> None:
        while self.pages.get(session) is page:
            await asyncio.sleep(0.5)
            if not page.lock.locked() and time.monotonic() - page.last_frame > IDLE_CLOSE_S:
                await self.stop(session)

    def _shown(self, page: PageStream):
        """The newest animated frame as a file when it is not on the page yet (else no change)."""
        result = page.newest
        if result is None or result.sequence == page.shown:
            return gr.update()
        path = page.folder / f"{result.sequence:08d}.jpg"
        path.write_bytes(result.image)
        page.shown = result.sequence
        for old in sorted(page.folder.glob("*.jpg"))[:-KEEP_FILES]:
            old.unlink(missing_ok=True)
        return str(path)

    # -- layout --------------------------------------------------------------------------------------------------
    def layout(self, demo, widgets: dict, webrtc=None) -> None:
        """The tab's content (inside ``gr.Tab``); ``widgets``: the Animate tab's option widgets by name;
        ``webrtc``: the WebRTC panel (``client/web_webrtc.py``; None: the gateway is not served, streaming only)."""
        source = gr.Image(label="Portrait to animate", type="filepath", height=240, sources=["upload", "clipboard"],
                          elem_id="live-source")
        gr.Markdown("Options: the Animate tab's (source crop, which face, motion, smoothing).")
        if webrtc is not None:
            webrtc.layout(source, widgets)
        with gr.Accordion("Without WebRTC (the camera's frames through this page)", open=webrtc is None,
                          elem_id="live-fallback"):
            self.streaming_layout(demo, widgets, source)

    def streaming_layout(self, demo, widgets: dict, source) -> None:
        """The camera streamed through Gradio: works wherever the page does (no UDP between browser and server)."""
        with gr.Row():
            with gr.Column():
                camera = gr.Image(label="Camera: allow it, then press Start", sources=["webcam"], streaming=True,
                                  type="numpy", webcam_options=gr.WebcamOptions(constraints=CAMERA),
                                  elem_id="live-camera")
            with gr.Column():
                output = gr.Image(label="Animated", type="filepath", interactive=False, elem_id="live-output")
                status = gr.Textbox(label="Stream", interactive=False, lines=3, elem_id="live-readout")
        self.option_names = [name for name in widgets if name not in VIDEO_ONLY]
        camera.stream(self.on_frame, [camera, source, *(widgets[n] for n in self.option_names)], [output, status],
                      stream_every=1.0 / self.fps, time_limit=TIME_LIMIT_S, show_progress="hidden")
        gr.Timer(1.0).tick(self.on_tick, None, status, show_progress="hidden")
        demo.unload(self.unload)
