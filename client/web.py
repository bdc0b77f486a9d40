"""``liveportrait web``: a Gradio page in front of the LivePortrait service.

    liveportrait web --server HOST:PORT [--port 7860] [--host 127.0.0.1]

The page's process is a gRPC client and nothing more: every action goes through ``client.api.PortraitClient``
(AnimatePortrait, EditPortrait, DetectFaces, AnimateStream) and no model is loaded here. Tabs, one module each:

* **Animate** (``client/web_animate.py``): source and driving inputs with previews, the options in accordions, the
  service's progress on the result, the result playing in the page and a download.
* **Edit** (``client/web_edit.py``): the ``Edit`` sliders with a live preview through EditPortrait; "Apply to
  animation" takes the portrait and the edit to the Animate tab.
* **Faces** (``client/web_faces.py``): DetectFaces draws the faces with their numbers; one is chosen for Animate.
* **Live** (``client/web_webrtc.py``, ``client/web_live.py``): the browser camera or microphone animates a portrait
  over WebRTC through the gateway this process serves under ``/webrtc`` (``client/gateway``, when the ``webrtc``
  extra is installed), or, as a fallback, the camera streamed through the page; both end in AnimateStream.

When the page opens it checks the service (``check_service``): a banner says when the service cannot be reached
(and how to start it) or serves synthetic weights. Errors are toasts titled by the action and a line in the tab's
status box, in words (the gRPC status on a details line), never a stack trace. ``WebProcess`` runs this page as a
child process (``liveportrait up --web``, the browser tests).
"""
from __future__ import annotations

import importlib.util
import io
import os
import shutil
import sys
import tempfile
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from orchestrator.child_process import ChildServer, http_ok
from orchestrator.triton_process import free_port

from .api import AsyncPortraitClient, PortraitClient
from .web_options import error_parts, unreachable_text

DEFAULT_PORT = 7860
SHUTDOWN_GRACE_S = 5.0  # on SIGTERM, what requests in progress get before the page's connections are closed
KEEP_RESULTS_S = 3600.0  # results written by this process are deleted after an hour (Gradio serves its own copies)
HEALTH_TIMEOUT_S = 5.0  # the page's check of the service when it opens
CSS = """
#service-banner { background: #fff4d6; border: 1px solid #e2b93b; border-radius: 8px; padding: 6px 14px; }
.sticky-column { position: sticky; top: 8px; align-self: flex-start; }
"""
# the camera's button in the Live tab (Gradio's words are "Record" and "Stop": nothing is recorded)
WORDS = {"audio.record": "Start", "audio.stop": "Stop"}


class WebApp:
    """The page's handlers (plain methods, testable without a browser) and ``blocks()`` that lays them out."""

    def __init__(self, server: str, root_certificates: Path | None = None, timeout: float | None = None,
                 work_dir: Path | None = None, api_key: str | None = None, client_cert: Path | None = None,
                 client_key: Path | None = None, gateway=None):
        self.server = server
        self.gateway = gateway  # the mounted WebRTC gateway (client/web_webrtc.py), None without it
        self.client = PortraitClient(server, root_certificates, api_key, client_cert, client_key)
        # the Live tab's streams: an asyncio client made in Gradio's event loop
        self.connect = lambda: AsyncPortraitClient(server, root_certificates, api_key, client_cert, client_key)
        self.timeout = timeout
        self.work_dir = Path(work_dir or tempfile.mkdtemp(prefix="liveportrait-web-"))
        self.work_dir.mkdir(parents=True, exist_ok=True)

        self._weights = ""  # the served models' weights, once known

    def result_dir(self) -> Path:
        """A new folder for one result; those older than ``KEEP_RESULTS_S`` are deleted."""
        now, results = time.time(), self.work_dir / "results"  # beside "examples" and "live"
        results.mkdir(exist_ok=True)
        for old in results.iterdir():
            if old.is_dir() and now - old.stat().st_mtime > KEEP_RESULTS_S:
                shutil.rmtree(old, ignore_errors=True)
        return Path(tempfile.mkdtemp(dir=results))

    # -- the service ---------------------------------------------------------------------------------------------
    def check_service(self) -> str:
        """The banner's text when the page opens: empty when the service answers with real weights."""
        try:
            status = self.client.health(timeout=HEALTH_TIMEOUT_S)
        except grpc.RpcError as exc:
            message, details = error_parts(exc, self.server)
            if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                message = unreachable_text(self.server)
            return f"**{message}**" + (f"  \n{details}" if details else "")
        if status != "SERVING":
            return (f"**The LivePortrait service at {self.server} is not ready yet** ({status.lower()}): its models "
                    "are loading or its model server is down. Reload this page in a moment.")
        weights = self.served_weights()
        if weights.startswith("synthetic"):
            return ("**This service runs synthetic weights**: every result is structured noise, not a face. Start "
                    "it with the official LivePortrait weights (`liveportrait up --weights DIR`) for real "
                    f"animations.  \n({weights})")
        return ""

    def served_weights(self) -> str:
        """The served models' ``weights`` parameter: asked once, by editing a small blank image (no detection)."""
        if not self._weights:
            from PIL import Image

            blank = io.BytesIO()
            Image.new("RGB", (64, 64), (128, 128, 128)).save(blank, format="PNG")
            try:
                result = self.client.edit(blank.getvalue(), {}, format="jpeg", crop_source=False,
                                          timeout=HEALTH_TIMEOUT_S * 6)
                self._weights = result.response.weights
            except grpc.RpcError:
                return ""  # the banner stays empty; the actions say what is wrong
        return self._weights

    # -- layout --------------------------------------------------------------------------------------------------
    def blocks(self):
        import gradio as gr

        from .web_animate import AnimateTab
        from .web_edit import EditTab
        from .web_faces import FacesTab
        from .web_live import LiveTab
        from .web_webrtc import WebRtcPanel

        # uploads and results in Gradio's cache are deleted after an hour
        with gr.Blocks(title="LivePortrait", analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
            gr.Markdown("# LivePortrait\nBring a portrait to life: **Animate** it with the motion of a video, "
                        "**Edit** its expression, pick one of several **Faces**, or drive it **Live** from your "
                        "camera.")
            banner = gr.Markdown(visible=False, elem_id="service-banner")
            with gr.Tabs() as tabs:
                with gr.Tab("Animate", id="animate"):
                    animate = AnimateTab(self)
                    animate.layout()
                with gr.Tab("Edit", id="edit"):
                    EditTab(self).layout(animate, tabs)
                with gr.Tab("Faces", id="faces"):
                    FacesTab(self).layout(animate, tabs)
                with gr.Tab("Live", id="live"):
                    webrtc = WebRtcPanel(self.gateway) if self.gateway is not None else None
                    LiveTab(self.connect, self.work_dir / "live", server=self.server).layout(demo, animate.widgets,
                                                                                            webrtc)
            gr.Markdown(f"Service: `{self.server}`", elem_id="service-address")

            def show_banner():
                text = self.check_service()
                return gr.update(value=text, visible=bool(text))

            demo.load(show_banner, None, banner, show_progress="hidden")
        return demo


def serve(server: str, host: str = "127.0.0.1", port: int = DEFAULT_PORT, root_certificates: Path | None = None,
          timeout: float | None = None, api_key: str | None = None, client_cert: Path | None = None,
          client_key: Path | None = None, ice_servers: list | None = None) -> None:
    """Run the page until interrupted; ``ice_servers``: the STUN/TURN servers of the Live tab's WebRTC."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    if importlib.util.find_spec("gradio") is None:
        raise RuntimeError("the web page needs Gradio: pip install 'liveportrait-serving[web]'")
    import gradio as gr

    import uvicorn
    from fastapi import FastAPI

    from .web_webrtc import HEAD, mount_gateway

    gateway = None

    @asynccontextmanager
    async def lifespan(_):
        yield
        if gateway is not None:
            await gateway.close_all()  # the WebRTC sessions end with the page's process
        # here, not after uvicorn.run: uvicorn raises SIGTERM again once it has shut down, which ends the process
        shutil.rmtree(app.work_dir, ignore_errors=True)

    site = FastAPI(lifespan=lifespan)
    if importlib.util.find_spec("aiortc") is not None:
        gateway = mount_gateway(site, server, root_certificates, api_key, client_cert, client_key, ice_servers or [])
    app = WebApp(server, root_certificates, timeout, api_key=api_key, client_cert=client_cert, client_key=client_key,
                 gateway=gateway)
    demo = app.blocks()
    demo.queue(default_concurrency_limit=8)
    gr.mount_gradio_app(site, demo, path="/", ssr_mode=False, show_error=False, footer_links=[], css=CSS,
                        head=HEAD, i18n=gr.I18n(en=WORDS))
    print(f"LivePortrait web page for {server} on http://{host}:{port}"
          + ("" if gateway else " (no WebRTC: install the 'webrtc' extra)"), flush=True)
    try:
        # On SIGTERM or Ctrl-C: requests in progress get SHUTDOWN_GRACE_S, then the connections still open (a
        # browser's page holds some) are closed, the WebRTC sessions end and the page's files are removed
        uvicorn.run(site, host=host, port=port, log_level="warning", timeout_graceful_shutdown=SHUTDOWN_GRACE_S)
    finally:  # also when the server did not start (a busy port)
        shutil.rmtree(app.work_dir, ignore_errors=True)


@dataclass
class WebProcess(ChildServer):
    """``liveportrait web`` as a child process (``liveportrait up --web``, the browser tests)."""

    name = "the web page"

    server: str
    log_file: Path
    port: int = field(default_factory=free_port)
    host: str = "127.0.0.1"
    startup_timeout_s: float = 120.0

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}/"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "client.cli", "web", "--server", self.server, "--port", str(self.port),
                "--host", self.host]

    def start(self) -> "WebProcess":
        env = dict(os.environ, PYTHONUNBUFFERED="1", GRADIO_ANALYTICS_ENABLED="False")
        self.spawn(self.command(), cwd=Path(__file__).resolve().parents[1], env=env)
        return self

    def is_ready(self) -> bool:
        return http_ok(self.url)
