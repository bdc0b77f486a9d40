"""The Live tab's WebRTC path: the page's own process serves the WebRTC gateway (``client/gateway``) under
``/webrtc`` on the page's origin, and a script in the page sends the browser's camera (or microphone) to it and
shows the animated portrait it sends back.

Server side: ``mount_gateway`` mounts ``gateway_app`` on the page's FastAPI app (same origin: no CORS, no second
port); requests that come without an ``Authorization`` header get the page's API key (``--api-key``,
``$LIVEPORTRAIT_API_KEY``) added here, so the key never reaches the browser. A mounted app's own lifespan does not
run: the page's (``client/web.py``) ends the gateway's sessions when its process stops.

Browser side (``HEAD``, the page's ``<head>``): "Start camera" / "Start voice" ask this process for a ticket (the
portrait uploaded to the gateway, the Animate tab's options as query options), then ``liveportraitWebrtc.start``
opens the camera or microphone, posts the SDP offer to ``/webrtc/whip`` and plays the answer's tracks; "Stop" deletes
the session. The read-out, every second: glass-to-glass latency p50 (a camera frame's capture -> the animated frame
made from it shown here, both on the browser's clock, matched through the gateway's ``timing`` data channel), the
frames per second shown, and in voice mode the audio received.
"""
from __future__ import annotations

import io
import json
from pathlib import Path

from .channel import default_api_key
from .web_live import live_kwargs

MOUNT = "/webrtc"
QUERY_ONLY = ("face_hint",)  # options the gateway's query cannot carry (it takes name=value pairs)


def with_api_key(app, api_key: str | None):
    """An ASGI app that adds ``Authorization: Bearer <api_key>`` to HTTP requests that come without one."""
    if not api_key:
        return app
    header = (b"authorization", f"Bearer {api_key}".encode())

    async def keyed(scope, receive, send):
        if scope["type"] == "http" and not any(name == b"authorization" for name, _ in scope["headers"]):
            scope = dict(scope, headers=[*scope["headers"], header])
        await app(scope, receive, send)
    return keyed


def mount_gateway(app, server: str, root_certificates: Path | None = None, api_key: str | None = None,
                  client_cert: Path | None = None, client_key: Path | None = None, ice_servers: list = ()):
    """The gateway for the orchestrator at ``server``, mounted on the FastAPI ``app`` at ``MOUNT``; returns it.
    ``ice_servers`` (``IceServer``): STUN/TURN for the gateway, and handed to the browser with each ticket."""
    from .gateway.app import GatewayConfig, gateway_app

    gateway = gateway_app(GatewayConfig(target=server, root_certificates=root_certificates, client_cert=client_cert,
                                        client_key=client_key, ice_servers=list(ice_servers)))
    app.mount(MOUNT, with_api_key(gateway, api_key or default_api_key()))
    return gateway.state.gateway


def query_text(values: dict, mode: str) -> str:
    """The Animate tab's options (those that differ from their defaults) as the gateway's query options;
    ValueError naming the ones it cannot take."""
    options = live_kwargs(values)
    refused = [name for name in QUERY_ONLY if name in options]
    smoothing = options.pop("smoothing", None)
    if smoothing and any(v is not None for v in smoothing.values()):
        refused.append("the smoothing settings (the checkbox alone is sent)")
    if refused:
        raise ValueError(f"{', '.join(refused)} cannot be sent over WebRTC: clear them, or use the streaming "
                         "without WebRTC")
    pairs = [("mode", "voice")] if mode == "voice" else []
    if smoothing is not None:
        pairs.append(("smooth", "true"))
    pairs += [(name, str(value).lower() if isinstance(value, bool) else str(value)) for name, value in options.items()]
    from urllib.parse import urlencode

    return urlencode(pairs)


def portrait_upload(path: str) -> tuple[str, bytes]:
    """The portrait file as the gateway takes it: JPEG or PNG bytes (another image format is converted to PNG)."""
    data = Path(path).read_bytes()
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg", data
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png", data
    from PIL import Image

    out = io.BytesIO()
    Image.open(io.BytesIO(data)).convert("RGB").save(out, format="PNG")
    return "image/png", out.getvalue()


class WebRtcPanel:
    """The WebRTC part of the Live tab: its buttons, the video and the read-out; ``gateway``: the mounted
    gateway (``mount_gateway``), through which the portrait is handed over."""

    def __init__(self, gateway):
        self.gateway = gateway
        self.option_names: list[str] = []

    def ticket(self, mode: str, source: str | None, values: dict) -> str:
        """What the script needs to start a session: ``{"portrait": id, "query": "..."}`` (JSON)."""
        import gradio as gr

        from .gateway.signalling import HttpError

        if not source:
            raise gr.Error("Upload a portrait to animate first.", title="Live stream", print_exception=False)
        try:
            query = query_text(values, mode)
            portrait = self.gateway.portraits.add(*portrait_upload(source))
        except (ValueError, OSError) as exc:
            raise gr.Error(f"Cannot start: {exc}", title="Live stream", print_exception=False) from None
        except HttpError as exc:
            raise gr.Error(f"Cannot start: {exc.message}", title="Live stream", print_exception=False) from None
        ice = [server.browser() for server in self.gateway.config.ice_servers]
        return json.dumps({"portrait": portrait, "query": query, "mode": mode, "ice": ice})

    def layout(self, source, widgets: dict) -> None:
        """Buttons, video and read-out (inside the Live tab); ``source``: the tab's portrait; ``widgets``: the
        Animate tab's option widgets by name."""
        import gradio as gr

        from .live_cli import VIDEO_ONLY

        self.option_names = [name for name in widgets if name not in VIDEO_ONLY]
        inputs = [source, *(widgets[n] for n in self.option_names)]
        with gr.Row():
            camera = gr.Button("Start camera", variant="primary", elem_id="webrtc-camera")
            voice = gr.Button("Start voice", elem_id="webrtc-voice")
            stop = gr.Button("Stop", variant="stop", elem_id="webrtc-stop")
        gr.HTML(PLAYER)
        ticket = gr.Textbox(visible=False)
        failure = gr.Textbox(visible=False)
        for button, mode in ((camera, "camera"), (voice, "voice")):
            button.click(lambda s, *v, m=mode: self.ticket(m, s, dict(zip(self.option_names, v))), inputs, ticket,
                         show_progress="hidden") \
                .success(None, ticket, failure, js="(t) => window.liveportraitWebrtc.start(t)") \
                .then(warn, failure, None, show_progress="hidden")
        stop.click(None, None, None, js="() => window.liveportraitWebrtc.stop()")


def warn(failure: str) -> None:
    """The script's failure to start, as a toast (it is in the read-out too)."""
    import gradio as gr

    if failure:
        gr.Warning(failure, title="Live stream failed")


PLAYER = """
<div id="webrtc-player">
  <video id="webrtc-video" autoplay playsinline muted style="max-width: 100%; max-height: 512px; background: #222">
  </video>
  <audio id="webrtc-audio" autoplay></audio>
  <pre id="webrtc-readout" style="white-space: pre-wrap; min-height: 3em">Press Start camera or Start voice.</pre>
</div>
"""

HEAD = """<script>
(() => {  // the Live tab's WebRTC session (client/web_webrtc.py)
  const BASE = window.location.pathname.replace(/\\/[^/]*$/, "") + "/webrtc";
  const CAMERA = {video: {width: {ideal: 640}, height: {ideal: 480}}};
  const s = window.liveportraitWebrtc = {pc: null, location: null, media: null, mode: "", latencies: [],
                                         shown: 0, fps: 0, audio: {packets: 0, bytes: 0}, error: ""};
  const el = (id) => document.getElementById(id);
  const say = (text) => { const r = el("webrtc-readout"); if (r) r.textContent = text; };
  const median = (xs) => { const v = [...xs].sort((a, b) => a - b); return v[Math.floor(v.length / 2)]; };
  // Chromium's RTP timestamps of a video are its capture times at 90 kHz, and the gateway's timing messages give
  // each animated frame's pts (out_pts, from its first) and its camera frame's (in_pts, from the first received).
  let generation = 0, sentFirst = null, captureBase = Infinity, receivedFirst = null, announced = new Map();
  let counted = [];  // [when, frames shown] of the last seconds (the fps over up to 5 s)

  const rtpOf = (frame) => frame.getMetadata().rtpTimestamp ?? frame.timestamp;
  function pipe(endpoint, onFrame) {  // encoded frames pass through, seen on the way
    const {readable, writable} = endpoint.createEncodedStreams();
    readable.pipeThrough(new TransformStream({transform(frame, out) { onFrame?.(frame); out.enqueue(frame); }}))
      .pipeTo(writable).catch(() => {});
  }
  function onSent(frame) {  // the capture time of the first camera frame: the earliest any frame could leave
    const rtp = rtpOf(frame);
    if (sentFirst === null) sentFirst = rtp;
    captureBase = Math.min(captureBase, performance.now() - ((rtp - sentFirst) >>> 0) / 90);
  }
  function onReceived(frame) { if (receivedFirst === null) receivedFirst = rtpOf(frame); }
  function onShown(video, mine) {
    const shown = (now, meta) => {
      if (mine !== generation) return;
      s.shown++;
      if (receivedFirst !== null && meta.rtpTimestamp !== undefined) {
        const out = (meta.rtpTimestamp - receivedFirst) >>> 0, inPts = announced.get(out);
        if (inPts !== undefined && isFinite(captureBase)) {
          s.latencies.push(meta.expectedDisplayTime - (captureBase + inPts / 90));
          if (s.latencies.length > 1500) s.latencies.shift();  // the p50 of the last minute at 25 fps
          announced.delete(out);
        }
      }
      video.requestVideoFrameCallback(shown);
    };
    video.requestVideoFrameCallback(shown);
  }
  const gathered = (pc) => new Promise((done) => {  // no trickle ICE: the offer carries the candidates
    if (pc.iceGatheringState === "complete") return done();
    pc.addEventListener("icegatheringstatechange", () => pc.iceGatheringState === "complete" && done());
    setTimeout(done, 2000);
  });

  async function readout() {
    const pc = s.pc;
    if (!pc) return;
    counted.push([performance.now(), s.shown]);
    if (counted.length > 6) counted.shift();
    const [[t0, n0], [t1, n1]] = [counted[0], counted[counted.length - 1]];
    s.fps = t1 > t0 ? (n1 - n0) * 1000 / (t1 - t0) : 0;
    for (const r of (await pc.getStats()).values()) {
      if (r.type === "inbound-rtp" && r.kind === "audio") s.audio = {packets: r.packetsReceived, bytes: r.bytesReceived};
    }
    const lines = [];
    if (!s.shown) lines.push(s.mode === "voice" ? "waiting for the first animated frame (speak)"
                                                : "waiting for the first animated frame (a face must show on the camera)");
    else if (s.mode === "camera") lines.push((s.latencies.length ? `latency p50 ${Math.round(median(s.latencies))} ms`
        : "latency -") + ` (camera capture -> animated frame shown here), ${s.fps.toFixed(1)} fps shown`);
    else lines.push(`${s.fps.toFixed(1)} fps shown`);
    if (s.mode === "voice") lines.push(`audio received: ${(s.audio.bytes / 1000).toFixed(0)} kB ` +
                                       `(${s.audio.packets} packets)`);
    lines.push(`${s.shown} animated frames shown` + (["failed", "closed"].includes(pc.connectionState)
                                                    ? ", stream ended" : ""));
    if (s.error) lines.push(`Live stream failed: ${s.error}`);
    if (s.pc === pc) say(lines.join("\\n"));
  }

  s.start = async (ticket) => {
    await s.stop();
    const mine = ++generation;
    sentFirst = null; captureBase = Infinity; receivedFirst = null; announced = new Map();
    Object.assign(s, {latencies: [], shown: 0, fps: 0, audio: {packets: 0, bytes: 0}, error: ""});
    try {
      const t = JSON.parse(ticket), voice = t.mode === "voice";
      s.mode = t.mode;
      say(`starting (${voice ? "microphone" : "camera"})...`);
      s.media = await navigator.mediaDevices.getUserMedia(voice ? {audio: true} : CAMERA);
      const insertable = "createEncodedStreams" in RTCRtpSender.prototype;  // Chromium: for the latency
      const pc = s.pc = new RTCPeerConnection({iceServers: t.ice || [],
                                               ...(insertable ? {encodedInsertableStreams: true} : {})});
      const timing = pc.createDataChannel("timing");
      timing.onmessage = (e) => { const m = JSON.parse(e.data); if (m.in_pts !== undefined) announced.set(m.out_pts, m.in_pts); };
      const sending = pc.addTransceiver(s.media.getTracks()[0], {direction: "sendrecv", streams: [s.media]});
      if (insertable) pipe(sending.sender, voice ? null : onSent);
      if (voice) pc.addTransceiver("video", {direction: "recvonly"});
      pc.ontrack = (e) => {
        if (insertable) pipe(e.receiver, e.track.kind === "video" ? onReceived : null);
        const player = el(e.track.kind === "video" ? "webrtc-video" : "webrtc-audio");
        player.srcObject = new MediaStream([e.track]);
        player.play().catch(() => {});
      };
      pc.onconnectionstatechange = () => {
        if (pc.connectionState === "failed" && s.pc === pc)
          s.error = "the media connection failed: UDP between this browser and the page's server is blocked";
      };
      await pc.setLocalDescription(await pc.createOffer());
      await gathered(pc);
      const query = `portrait=${encodeURIComponent(t.portrait)}` + (t.query ? `&${t.query}` : "");
      const response = await fetch(`${BASE}/whip?${query}`, {method: "POST", body: pc.localDescription.sdp,
                                                             headers: {"Content-Type": "application/sdp"}});
      const text = await response.text();
      if (response.status !== 201) throw new Error(`HTTP ${response.status}: ${text.trim().slice(0, 400)}`);
      if (mine !== generation) return "";  // stopped meanwhile
      s.location = response.headers.get("Location");  // the session's path, the mount's prefix included
      await pc.setRemoteDescription({type: "answer", sdp: text});
      onShown(el("webrtc-video"), mine);
      counted = [[performance.now(), 0]];
      s.timer = setInterval(readout, 1000);
      return "";
    } catch (e) {
      const message = e.name === "NotAllowedError" ? "the browser did not allow the camera or microphone"
                    : e.name === "NotFoundError" ? "the browser found no camera or microphone" : e.message;
      await s.stop();
      s.error = message;
      say(`Live stream failed: ${message}`);
      return `Live stream failed: ${message}`;
    }
  };

  s.stop = async () => {  // DELETE frees the session (and its stream) at once
    const pc = s.pc, location = s.location;
    clearInterval(s.timer);
    if (pc) await readout();
    generation++;
    s.pc = s.location = null;
    if (location) await fetch(location, {method: "DELETE"}).catch(() => {});
    pc?.close();
    s.media?.getTracks().forEach((track) => track.stop());
    s.media = null;
    if (pc) say(el("webrtc-readout").textContent.replace(/\\n?Live stream failed.*$|, stream ended$/s, "") + ", stream ended");
  };
  window.addEventListener("pagehide", () => s.location && fetch(s.location, {method: "DELETE", keepalive: true}));
})();
</script>"""
