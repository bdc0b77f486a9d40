"""``liveportrait web``: a Gradio page in front of the LivePortrait service.

    liveportrait web --server HOST:PORT [--port 7860] [--host 127.0.0.1]

The page's process is a gRPC client and nothing more: every action goes through ``client.api.PortraitClient``
(AnimatePortrait, EditPortrait, DetectFaces) and no model is loaded here. Tabs:

* **Animate**: a source portrait and a driving video / image / motion template (or expression keyframes as JSON),
  every AnimatePortrait option with its default (the names, defaults and ranges of ``liveportrait animate``), progress
  while it runs, the result playing in the page and a download.
* **Edit**: the ``Edit`` sliders with a live preview through EditPortrait (the session id of the first answer is sent
  back, so later moves skip detection and feature extraction on the server); "Apply to animation" copies the edit
  into the Animate tab's ``edit`` option.
* **Faces**: DetectFaces draws the faces with their indices; choosing one sets the Animate tab's face index.
* **Live**: the browser camera animates a portrait through AnimateStream, with a latency read-out
  (``client/web_live.py``).

Errors of the service are shown as ``CODE: message`` in the tab's status box (and a toast), never as a stack trace.
``WebProcess`` runs this page as a child process (``liveportrait up --web``, the browser tests).
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from orchestrator.child_process import ChildServer, http_ok
from orchestrator.triton_process import free_port
from protos.liveportrait.v1 import portrait_animator_pb2 as pb

from .api import AsyncPortraitClient, PortraitClient
from .messages import IMAGE_SUFFIXES, VIDEO_SUFFIXES
from .templates import TEMPLATE_SUFFIXES, TemplateError
from .web_options import (ANIMATE_OPTIONS, EDIT_SLIDERS, EDIT_SOURCE_OPTIONS, FACE_ORDERS, FACE_WIDGETS,
                          OFFICIAL_SLIDERS, OPTION_BY_NAME, STAGE_NAMES, Option, Slider, animate_kwargs, edit_json,
                          error_text, json_value, slider_edit, summary_text)

DEFAULT_PORT = 7860
KEEP_RESULTS_S = 3600.0  # results written by this process are deleted after an hour (Gradio serves its own copies)


def _draw_faces(path: str, faces) -> "object":
    """The image (EXIF orientation applied, as the service does) with each face's box and index drawn."""
    import cv2
    import numpy as np
    from PIL import Image, ImageOps

    image = np.array(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
    thickness = max(2, round(max(image.shape[:2]) / 400))
    for i, face in enumerate(faces):
        x1, y1, x2, y2 = (int(round(v)) for v in face.box)
        cv2.rectangle(image, (x1, y1), (x2, y2), (0, 255, 0), thickness)
        scale = max(0.8, (x2 - x1) / 120)
        (tw, th), _ = cv2.getTextSize(str(i), cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        cv2.rectangle(image, (x1, max(0, y1 - th - 8)), (x1 + tw + 8, y1), (0, 255, 0), -1)
        cv2.putText(image, str(i), (x1 + 4, y1 - 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thickness)
    return image


class WebApp:
    """The page's handlers (plain methods, testable without a browser) and ``blocks()`` that lays them out."""

    def __init__(self, server: str, root_certificates: Path | None = None, timeout: float | None = None,
                 work_dir: Path | None = None, api_key: str | None = None, client_cert: Path | None = None,
                 client_key: Path | None = None):
        self.server = server
        self.client = PortraitClient(server, root_certificates, api_key, client_cert, client_key)
        # the Live tab's streams: an asyncio client made in Gradio's event loop
        self.connect = lambda: AsyncPortraitClient(server, root_certificates, api_key, client_cert, client_key)
        self.timeout = timeout
        self.work_dir = Path(work_dir or tempfile.mkdtemp(prefix="liveportrait-web-"))
        self.work_dir.mkdir(parents=True, exist_ok=True)

    # -- files ---------------------------------------------------------------------------------------------------
    def _result_dir(self) -> Path:
        now = time.time()
        for old in self.work_dir.iterdir():
            if old.is_dir() and now - old.stat().st_mtime > KEEP_RESULTS_S:
                shutil.rmtree(old, ignore_errors=True)
        return Path(tempfile.mkdtemp(dir=self.work_dir))

    # -- Animate -------------------------------------------------------------------------------------------------
    def animate(self, source: str | None, driving: str | None, keyframes: str, edit: str, *values,
                progress=None) -> tuple[str | None, str | None, str]:
        """-> (video for the player, file to download, status text)."""
        import gradio as gr

        progress = progress or (lambda *a, **k: None)
        try:
            if not source:
                raise ValueError("upload a source portrait first")
            kwargs = animate_kwargs(dict(zip((o.name for o in ANIMATE_OPTIONS), values)))
            kwargs["edit"] = json_value(edit, "the edit option")  # Edit fields by name (client/edits.py)
            kwargs["keyframes"] = json_value(keyframes, "the keyframes")  # the keyframes JSON of client/edits.py
            if kwargs["keyframes"] is not None:
                drive = None
            elif driving:
                drive = Path(driving)
            else:
                raise ValueError("upload a driving video, image or motion template (or write keyframes)")
            output = self._result_dir() / f"{Path(source).stem}-animated.mp4"

            def on_progress(p: pb.Progress) -> None:
                stage = STAGE_NAMES.get(p.stage, "working")
                if p.frames_total:
                    progress((p.frames_done, p.frames_total), desc=stage, unit="frames")
                else:
                    progress(None, desc=f"{stage} {p.message}".strip())

            progress(0.0, desc="sending")
            summary = self.client.animate(Path(source), drive, output, on_progress=on_progress, timeout=self.timeout,
                                          **kwargs)
            return str(output), str(output), summary_text(summary)
        except (grpc.RpcError, TemplateError, ValueError, OSError) as exc:
            message = error_text(exc)
            gr.Warning(message, title="Animate failed")
            return None, None, f"error: {message}"

    # -- Edit ----------------------------------------------------------------------------------------------------
    def edit(self, source: str | None, session: dict | None, source_values: dict, *values):
        """-> (preview image path, session state, status). ``session`` holds the session id of the previous answer
        for this source and the source's measured eye/lip ratios."""
        import gradio as gr

        session = dict(session or {})
        try:
            if not source:
                raise ValueError("upload a portrait to edit")
            ratios = session.get("ratios")  # the eye/lip sliders start at these: not an edit
            key = json.dumps([source, {k: source_values[k] for k in sorted(source_values)}])
            if session.get("source") != key:  # another image or other crop/face options: a new session
                session = {"source": key}
            edit = slider_edit(dict(zip((s.name for s in EDIT_SLIDERS), values)), ratios)
            response = self._edit_call(Path(source), session.get("session_id", ""), source_values, edit)
            session["session_id"] = response.session_id
            session.setdefault("ratios", _source_ratios(response.response))
            path = self._result_dir() / f"{Path(source).stem}-edited.jpg"  # JPEG: ~10x faster to encode than PNG
            path.write_bytes(response.image)
            status = (f"{response.width}x{response.height} in {response.seconds * 1000:.0f} ms "
                      f"({'session reused' if response.session_reused else 'source prepared'}: "
                      + ", ".join(f"{stage} {s * 1000:.0f}" for stage, s in response.timings.items()) + " ms)")
            status += "".join(f"\nWARNING: {w}" for w in response.warnings)
            return str(path), session, status
        except (grpc.RpcError, ValueError, OSError) as exc:
            message = error_text(exc)
            gr.Warning(message, title="Edit failed")
            return gr.update(), session, f"error: {message}"

    def _edit_call(self, source: Path, session_id: str, source_values: dict, edit: "pb.Edit"):
        """EditPortrait through ``PortraitClient.edit``: the session of the previous answer (the library re-sends
        the image when a replica no longer has it), the Animate tab's crop and face options."""
        options = animate_kwargs({k: v for k, v in source_values.items() if k in EDIT_SOURCE_OPTIONS})
        return self.client.edit(source, edit, session_id=session_id or None, format="jpeg", jpeg_quality=95,
                                timeout=self.timeout, **options)

    # -- Faces ---------------------------------------------------------------------------------------------------
    def detect(self, image: str | None, ordering: str):
        """-> (annotated image, face choices update, status)."""
        import gradio as gr

        try:
            if not image:
                raise ValueError("upload an image")
            response = self.client.detect(Path(image), ordering, timeout=self.timeout)
            if not response.faces:
                return None, gr.update(choices=[], value=None), "no face found"
            drawn = _draw_faces(image, response.faces)
            choices = [(f"{i}: score {f.score:.2f}, box {[round(v) for v in f.box]}", i)
                       for i, f in enumerate(response.faces)]
            return drawn, gr.update(choices=choices, value=0), (f"{len(response.faces)} face(s) in "
                                                                f"{response.width}x{response.height}, {ordering}")
        except (grpc.RpcError, ValueError, OSError) as exc:
            message = error_text(exc)
            gr.Warning(message, title="DetectFaces failed")
            return None, gr.update(choices=[], value=None), f"error: {message}"

    # -- layout --------------------------------------------------------------------------------------------------
    def blocks(self):
        import gradio as gr

        driving_types = [*VIDEO_SUFFIXES, *IMAGE_SUFFIXES, *TEMPLATE_SUFFIXES]
        # uploads and results in Gradio's cache are deleted after an hour
        with gr.Blocks(title="LivePortrait", analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
            gr.Markdown(f"# LivePortrait\nService: `{self.server}`. Every action is a call to its gRPC API.")
            with gr.Tabs() as tabs:
                with gr.Tab("Animate", id="animate"):
                    with gr.Row():
                        with gr.Column():
                            source = gr.File(label="Source portrait (image), or a source video (video-to-video)",
                                             file_types=[*IMAGE_SUFFIXES, *VIDEO_SUFFIXES], elem_id="animate-source")
                            driving = gr.File(label="Driving video, image or motion template (.pb, .json, .pkl)",
                                              file_types=driving_types, elem_id="animate-driving")
                            keyframes = gr.Textbox(
                                label="Expression keyframes (JSON; used instead of the driving file)", lines=3,
                                placeholder='{"fps": 25, "keyframes": [{"edit": {}, "duration_s": 0}, '
                                            '{"edit": {"smile": 1.0, "head_yaw": 10}, "duration_s": 1.5, '
                                            '"easing": "ease_in_out"}]}',
                                elem_id="animate-keyframes")
                            edit_option = gr.Textbox(label="edit: applied to every frame (JSON; 'Apply to "
                                                           "animation' in the Edit tab fills it)", lines=1,
                                                     elem_id="animate-edit")
                            widgets = {}
                            with gr.Row():  # the face to animate (the Faces tab sets them)
                                for name in FACE_WIDGETS:
                                    widgets[name] = _widget(gr, OPTION_BY_NAME[name])
                            with gr.Accordion("Options (defaults: the official LivePortrait CLI)", open=False):
                                for option in ANIMATE_OPTIONS:
                                    if option.name not in FACE_WIDGETS:
                                        widgets[option.name] = _widget(gr, option)
                            widgets = {o.name: widgets[o.name] for o in ANIMATE_OPTIONS}
                            run = gr.Button("Animate", variant="primary", elem_id="animate-run")
                        with gr.Column():
                            video = gr.Video(label="Result", interactive=False, elem_id="animate-video")
                            download = gr.File(label="Download", interactive=False, elem_id="animate-download")
                            status = gr.Textbox(label="Status", interactive=False, lines=3,
                                                elem_id="animate-status")

                    def do_animate(src, drv, kf, ed, *values, progress=gr.Progress()):
                        return self.animate(src, drv, kf, ed, *values, progress=progress)

                    run.click(do_animate, [source, driving, keyframes, edit_option, *widgets.values()],
                              [video, download, status], concurrency_limit=None)

                with gr.Tab("Edit", id="edit"):
                    with gr.Row():
                        with gr.Column():
                            edit_source = gr.File(label="Portrait to edit (image)", file_types=list(IMAGE_SUFFIXES),
                                                  elem_id="edit-source")
                            gr.Markdown("Source crop and face: the Animate tab's options (crop, face index, hint).")
                            sliders = {}
                            with gr.Accordion("LivePortrait retargeting", open=True):
                                for s in OFFICIAL_SLIDERS:
                                    sliders[s.name] = _slider(gr, s)
                            with gr.Accordion("Expression editor (ComfyUI-AdvancedLivePortrait)", open=False):
                                for s in EDIT_SLIDERS[len(OFFICIAL_SLIDERS):]:
                                    sliders[s.name] = _slider(gr, s)
                            with gr.Row():
                                reset = gr.Button("Reset sliders", elem_id="edit-reset")
                                apply = gr.Button("Apply to animation", variant="primary", elem_id="edit-apply")
                        with gr.Column():
                            preview = gr.Image(label="Preview", type="filepath", format="jpeg", interactive=False,
                                               elem_id="edit-preview")
                            edit_status = gr.Textbox(label="Status", interactive=False, lines=2,
                                                     elem_id="edit-status")
                    session = gr.State({})
                    source_names = [n for n in EDIT_SOURCE_OPTIONS]

                    def do_edit(src, state, *values):
                        source_values = dict(zip(source_names, values[:len(source_names)]))
                        preview_path, state, text = self.edit(src, state, source_values,
                                                              *values[len(source_names):])
                        ratios = state.get("ratios") or {}
                        updates = [gr.update(value=ratios[n]) if n in ratios and state.get("fresh", True)
                                   else gr.update() for n in ("eye_ratio", "lip_ratio")]
                        state["fresh"] = False
                        return preview_path, state, text, *updates

                    edit_inputs = [edit_source, session, *(widgets[n] for n in source_names), *sliders.values()]
                    edit_outputs = [preview, session, edit_status, sliders["eye_ratio"], sliders["lip_ratio"]]
                    edit_source.upload(lambda: {}, None, session).then(
                        _reset_values, None, list(sliders.values())).then(do_edit, edit_inputs, edit_outputs)
                    for slider in sliders.values():
                        slider.release(do_edit, edit_inputs, edit_outputs, trigger_mode="always_last")

                    def do_reset(state):
                        ratios = (state or {}).get("ratios") or {}
                        return [gr.update(value=ratios.get(s.name, s.neutral)) for s in EDIT_SLIDERS]

                    reset.click(do_reset, session, list(sliders.values())).then(do_edit, edit_inputs, edit_outputs)

                    def do_apply(state, *values):
                        edit = slider_edit(dict(zip(sliders, values)), (state or {}).get("ratios"))
                        return edit_json(edit), gr.Tabs(selected="animate")

                    apply.click(do_apply, [session, *sliders.values()], [edit_option, tabs])

                with gr.Tab("Faces", id="faces"):
                    with gr.Row():
                        with gr.Column():
                            faces_image = gr.File(label="Image", file_types=list(IMAGE_SUFFIXES),
                                                  elem_id="faces-image")
                            ordering = gr.Dropdown(list(FACE_ORDERS), value="large-small", label="face order",
                                                   elem_id="faces-order")
                            detect = gr.Button("Detect faces", variant="primary", elem_id="faces-detect")
                            choice = gr.Radio([], label="Animate this face", elem_id="faces-choice")
                            use = gr.Button("Use this image and face in Animate", elem_id="faces-use")
                        with gr.Column():
                            drawn = gr.Image(label="Faces", interactive=False, elem_id="faces-drawn")
                            faces_status = gr.Textbox(label="Status", interactive=False, elem_id="faces-status")
                    detect.click(self.detect, [faces_image, ordering], [drawn, choice, faces_status])
                    faces_image.upload(self.detect, [faces_image, ordering], [drawn, choice, faces_status])
                    choice.change(lambda i, o: (gr.update() if i is None else int(i), o), [choice, ordering],
                                  [widgets["face_index"], widgets["face_order"]])

                    def do_use(image, index, order):
                        if not image:
                            return gr.update(), gr.update(), gr.update(), gr.Tabs()
                        return image, 0 if index is None else int(index), order, gr.Tabs(selected="animate")

                    use.click(do_use, [faces_image, choice, ordering],
                              [source, widgets["face_index"], widgets["face_order"], tabs])

                with gr.Tab("Live", id="live"):
                    from .web_live import LiveTab

                    LiveTab(self.connect, self.work_dir / "live").layout(demo, widgets)
        return demo


def _source_ratios(response) -> dict:
    ratios = {}
    if len(response.source_eye_ratio):
        ratios["eye_ratio"] = round(float(sum(response.source_eye_ratio) / len(response.source_eye_ratio)), 2)
    if response.source_lip_ratio:
        ratios["lip_ratio"] = round(float(response.source_lip_ratio), 2)
    return ratios


def _reset_values():
    return [s.neutral for s in EDIT_SLIDERS]


def _widget(gr, option: Option):
    info = option.help or None
    if isinstance(option.default, bool):
        return gr.Checkbox(value=option.default, label=option.label, info=info, elem_id=f"opt-{option.name}")
    if option.choices:
        return gr.Dropdown(list(option.choices), value=option.default, label=option.label, info=info,
                           elem_id=f"opt-{option.name}")
    if isinstance(option.default, str):
        return gr.Textbox(value=option.default, label=option.label, info=info, elem_id=f"opt-{option.name}")
    return gr.Number(value=option.default, label=option.label, info=info, minimum=option.minimum,
                     maximum=option.maximum, step=option.step or 1, precision=0 if option.integer else None,
                     elem_id=f"opt-{option.name}")


def _slider(gr, s: Slider):
    return gr.Slider(s.minimum, s.maximum, value=s.neutral, step=s.step, label=f"{s.label} ({s.name})",
                     elem_id=f"edit-{s.name}")


def serve(server: str, host: str = "127.0.0.1", port: int = DEFAULT_PORT, root_certificates: Path | None = None,
          timeout: float | None = None, api_key: str | None = None, client_cert: Path | None = None,
          client_key: Path | None = None) -> None:
    """Run the page until interrupted."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    if importlib.util.find_spec("gradio") is None:
        raise RuntimeError("the web page needs Gradio: pip install 'liveportrait-serving[web]'")
    app = WebApp(server, root_certificates, timeout, api_key=api_key, client_cert=client_cert, client_key=client_key)
    demo = app.blocks()
    demo.queue(default_concurrency_limit=8)
    print(f"LivePortrait web page for {server} on http://{host}:{port}", flush=True)
    try:
        demo.launch(server_name=host, server_port=port, share=False, ssr_mode=False, show_error=False,
                    footer_links=[], inbrowser=False, quiet=True)
    finally:
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
