"""The web page's **Animate** tab: a source (photo, or a video for video-to-video) and a driving input (video, image,
motion template or voice), each with a preview, and the Animate button right under them; the options in accordions
by topic (plain titles, one line of help each; names, defaults and ranges of ``liveportrait animate``); keyframes
and the edit option as JSON in a closed accordion; the result beside, with its download and status. While the
service works, its ``Progress`` messages (stage, frames done of total) move the progress bar on the result."""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import av
import grpc

from protos.liveportrait.v1 import portrait_animator_pb2 as pb

from .messages import AUDIO_SUFFIXES, IMAGE_SUFFIXES, is_video
from .templates import TEMPLATE_SUFFIXES, TemplateError, read_template
from .web_compare import side_by_side
from .web_options import (ANIMATE_OPTIONS, FACE, GROUPS, KEYFRAME_COLUMNS, STAGE_NAMES, Option, animate_kwargs,
                          faces_value, failure_text, json_value, keyframe_rows, keyframes_json, summary_text)

if TYPE_CHECKING:
    from .web import WebApp

ADVANCED = "Advanced: expression keyframes and a fixed edit (JSON)"
PREVIEW_HEIGHT = 300
EXAMPLE_KEYFRAMES = {  # client/edits.py keyframes: expressions over time, no driving input needed
    "a smile, then a wink": json.dumps({"fps": 25, "keyframes": [
        {"edit": {}, "duration_s": 0}, {"edit": {"smile": 1.0}, "duration_s": 1.0, "easing": "ease_in_out"},
        {"edit": {"smile": 1.0, "wink": 20}, "duration_s": 0.5, "easing": "ease_in_out"},
        {"edit": {}, "duration_s": 1.0, "easing": "ease_in_out"}]}),
    "look left, then right": json.dumps({"fps": 25, "keyframes": [
        {"edit": {}, "duration_s": 0}, {"edit": {"head_yaw": -15}, "duration_s": 1.0, "easing": "ease_in_out"},
        {"edit": {"head_yaw": 15}, "duration_s": 2.0, "easing": "ease_in_out"},
        {"edit": {}, "duration_s": 1.0, "easing": "ease_in_out"}]}),
}  # pixels: source, driving and result previews (two rows of them fit 1000 pixels with the button)
KEYFRAMES_PLACEHOLDER = ('{"fps": 25, "keyframes": [{"edit": {}, "duration_s": 0}, '
                         '{"edit": {"smile": 1.0, "head_yaw": 10}, "duration_s": 1.5, "easing": "ease_in_out"}]}')


EXAMPLE_PORTRAIT = Path(__file__).resolve().parent / "examples" / "astronaut.jpg"  # examples/README.md

class AnimateTab:
    """The tab's handler (a plain method, testable without a browser) and its layout."""

    def __init__(self, app: "WebApp"):
        self.app = app
        self.widgets: dict = {}  # option name -> widget (the Edit and Live tabs read the crop and face options)
        self.accordions: dict = {}  # by title: the Faces and Edit tabs open the one they fill in
        self.source = self.edit_option = self.faces = self.face_files = self.keyframe_table = None

    def animate(self, source: str | None, driving: str | None, keyframes: str, edit: str, faces: str,
                face_files: list[str] | None, *values, progress=None) -> tuple:
        """-> (video for the player, still image, file to download, status text): a still driving input (an image,
        a one-frame template) gives a still image (a PNG from the server). ``faces``: "all", "0, 2" or "" (one face);
        ``face_files``: the own driving inputs of the first chosen faces, in order."""
        import gradio as gr

        if progress is None:  # (not `progress or ...`: an idle gr.Progress has length 0)
            progress = lambda *a, **k: None  # noqa: E731
        try:
            if not source:
                raise ValueError("add a source portrait (a photo, or a video for video-to-video) first")
            kwargs = animate_kwargs(dict(zip((o.name for o in ANIMATE_OPTIONS), values)))
            kwargs["edit"] = json_value(edit, "the edit")  # Edit fields by name (client/edits.py)
            kwargs["keyframes"] = json_value(keyframes, "the keyframes")  # the keyframes JSON of client/edits.py
            kwargs["faces"] = faces_value(faces)
            face_files = list(face_files or [])
            if face_files and kwargs["faces"] is None:
                raise ValueError("a face's own driving needs several faces (all, or face numbers)")
            kwargs["face_drivings"] = {i: Path(f) for i, f in enumerate(face_files)} or None
            if kwargs["keyframes"] is not None:
                drive = None
            elif driving:
                drive = Path(driving)
            else:
                raise ValueError("add a driving video, image, motion template or voice (or write keyframes)")
            still = drive is not None and not is_video(Path(source)) and _still_driving(drive)
            output = self.app.result_dir() / f"{Path(source).stem}-animated.{'png' if still else 'mp4'}"

            def on_progress(p: pb.Progress) -> None:
                stage = STAGE_NAMES.get(p.stage, "working").replace("_", " ")
                desc = f"{stage}: {p.message}" if p.message else stage
                if p.frames_total:
                    progress((p.frames_done, p.frames_total), desc=desc, unit="frames")
                else:
                    progress(0.0, desc=desc)

            progress(0.0, desc="sending the inputs")
            summary = self.app.client.animate(Path(source), drive, output, on_progress=on_progress,
                                              timeout=self.app.timeout, **kwargs)
            return (gr.update(value=None if still else str(output), visible=not still),
                    gr.update(value=str(output) if still else None, visible=still),
                    gr.update(value=str(output), visible=True),
                    summary_text(summary, [Path(f).name for f in face_files]))
        except (grpc.RpcError, ValueError, OSError) as exc:
            text = failure_text("Animate", exc, self.app.server)
            gr.Warning(text, title="Animate failed")
            return None, gr.update(value=None, visible=False), gr.update(value=None, visible=False), text

    def compare(self, driving: str | None, result: str | None):
        """The driving video and the result side by side (``web_compare``)."""
        import gradio as gr

        if not driving or not result:
            gr.Warning("animate with a driving video first: the comparison shows it beside the result",
                       title="Compare")
            return gr.update(value=None, visible=False)
        output = self.app.result_dir() / f"{Path(result).stem}-vs-driving.mp4"
        try:
            side_by_side(Path(driving), Path(result), output)
        except (ValueError, OSError, av.FFmpegError) as exc:
            gr.Warning(f"the comparison could not be made: {str(exc)[:200]}", title="Compare")
            return gr.update(value=None, visible=False)
        return gr.update(value=str(output), visible=True)

    # -- layout --------------------------------------------------------------------------------------------------
    def layout(self) -> None:
        import gradio as gr

        h = PREVIEW_HEIGHT
        with gr.Row():
            with gr.Column(scale=3):
                with gr.Row(equal_height=True):
                    with gr.Column(min_width=280):
                        with gr.Tabs():
                            with gr.Tab("Photo", elem_id="source-photo-tab"):
                                source = gr.Image(label="Source: the portrait to animate", type="filepath", height=h,
                                                  sources=["upload", "clipboard"], elem_id="animate-source")
                                gr.Examples([[str(EXAMPLE_PORTRAIT)]], inputs=source,
                                            example_labels=["astronaut (NASA, public domain)"],
                                            label="Example portrait", elem_id="animate-example-portrait")
                            with gr.Tab("Video", elem_id="source-video-tab"):
                                source_video = gr.Video(label="Source: a video to re-animate", height=h,
                                                        sources=["upload"], elem_id="animate-source-video")
                    with gr.Column(min_width=280):
                        with gr.Tabs():
                            with gr.Tab("Video", elem_id="driving-video-tab"):
                                driving = gr.Video(label="Driving: the motion to copy", height=h, sources=["upload"],
                                                   elem_id="animate-driving")
                            with gr.Tab("Image", elem_id="driving-image-tab"):
                                driving_image = gr.Image(label="Driving: an expression to copy", type="filepath",
                                                         height=h, sources=["upload", "clipboard"],
                                                         elem_id="animate-driving-image")
                            with gr.Tab("Template", elem_id="driving-template-tab"):
                                template = gr.File(label="Motion template (.pb, .json, .pkl from extract-motion)",
                                                   file_types=list(TEMPLATE_SUFFIXES), height=h - 110,
                                                   elem_id="animate-driving-template")
                                motions = example_motions(self.app.work_dir / "examples")
                                gr.Examples([[str(path)] for path in motions.values()], inputs=template,
                                            example_labels=list(motions), label="Example motions (made in code)",
                                            elem_id="animate-example-motions")
                            with gr.Tab("Voice", elem_id="driving-voice-tab"):
                                voice = gr.Audio(label="Speech that moves the lips and head", type="filepath",
                                                 sources=["upload"], elem_id="animate-driving-voice")
                                gr.Markdown(f"{', '.join(AUDIO_SUFFIXES)}; a source photo only")
                run = gr.Button("Animate", variant="primary", size="lg", elem_id="animate-run")
                widgets = {}
                for group in GROUPS:
                    with gr.Accordion(group, open=False, elem_id=f"options-{_slug(group)}") as self.accordions[group]:
                        for option in ANIMATE_OPTIONS:
                            if option.group == group:
                                widgets[option.name] = _widget(gr, option)
                        if group == FACE:
                            self.faces = gr.Textbox(
                                label="several faces", placeholder="all, or face numbers: 0, 2",
                                info="animate all faces, or these (the Faces tab fills it); empty: one face",
                                elem_id="animate-faces")
                            self.face_files = gr.File(
                                label="own driving of each chosen face (optional: the 1st file drives the 1st "
                                      "chosen face, ...; the others follow the driving input)",
                                file_count="multiple", height=120, elem_id="animate-face-drivings")
                with gr.Accordion(ADVANCED, open=False, elem_id="options-advanced") as self.accordions[ADVANCED]:
                    gr.Markdown("**Expression keyframes**, used instead of a driving input: each row moves the face "
                                "to its expression in that many seconds. Add rows from the Edit tab's sliders "
                                "(\"Add as a keyframe\"), or edit them here.")
                    self.keyframe_table = gr.Dataframe(
                        headers=list(KEYFRAME_COLUMNS), datatype=["number", "str", "str"], column_count=3,
                        type="array", interactive=True, label="Keyframes",
                        elem_id="animate-keyframe-table")
                    with gr.Row():
                        to_table = gr.Button("JSON to table", size="sm", elem_id="animate-keyframes-import")
                        clear_keyframes = gr.Button("Clear keyframes", size="sm", elem_id="animate-keyframes-clear")
                    keyframes = gr.Textbox(label="Keyframes as JSON (import and export)", lines=3,
                                           placeholder=KEYFRAMES_PLACEHOLDER, elem_id="animate-keyframes")
                    gr.Examples([[text] for text in EXAMPLE_KEYFRAMES.values()], inputs=keyframes,
                                example_labels=list(EXAMPLE_KEYFRAMES), label="Example keyframes",
                                elem_id="animate-example-keyframes")
                    edit_option = gr.Textbox(label="Edit applied to every frame ('Apply to animation' in the Edit "
                                                   "tab fills it)", lines=1, elem_id="animate-edit")
            with gr.Column(scale=2, min_width=320):
                video = gr.Video(label="Result", interactive=False, height=h, elem_id="animate-video")
                still = gr.Image(label="Result (a still image: the driving input was still)", type="filepath",
                                 interactive=False, height=h, visible=False, elem_id="animate-still")
                with gr.Row():
                    download = gr.DownloadButton("Download the result", visible=False, elem_id="animate-download")
                    compare = gr.Button("Compare with the driving video", size="sm", elem_id="animate-compare")
                status = gr.Textbox(label="Status", interactive=False, lines=3, max_lines=8, elem_id="animate-status")
                comparison = gr.Video(label="Driving video | result", interactive=False, height=h, visible=False,
                                      elem_id="animate-comparison")
        self.widgets = {o.name: widgets[o.name] for o in ANIMATE_OPTIONS}
        self.source, self.edit_option = source, edit_option

        def keyframes_converter(convert):
            """The table <-> JSON conversion for an event: a value that does not convert is a toast, nothing changes."""
            def converted(value):
                try:
                    return convert(value)
                except ValueError as exc:
                    gr.Warning(str(exc), title="Keyframes")
                    return gr.update()
            return converted

        self.keyframe_table.change(keyframes_converter(keyframes_json), self.keyframe_table, keyframes,
                                   show_progress="hidden")
        to_table.click(keyframes_converter(keyframe_rows), keyframes, self.keyframe_table, show_progress="hidden")
        clear_keyframes.click(lambda: ([], ""), None, [self.keyframe_table, keyframes], show_progress="hidden")

        # one source and one driving input at a time: adding one clears the others of its kind
        _one_of(source, source_video)
        _one_of(driving, driving_image, template, voice)

        # Gradio gives a progress tracker only to a parameter before *args
        def do_animate(progress=gr.Progress(), *values):
            photo, clip, drv_video, drv_image, drv_template, drv_voice, kf, ed, faces, files, *options = values
            return self.animate(photo or clip, drv_video or drv_image or drv_template or drv_voice, kf, ed, faces,
                                files, *options, progress=progress)

        compare.click(self.compare, [driving, video], comparison, concurrency_limit=None)
        run.click(do_animate, [source, source_video, driving, driving_image, template, voice, keyframes, edit_option,
                               self.faces, self.face_files, *self.widgets.values()], [video, still, download, status],
                  concurrency_limit=None)


def example_motions(folder: Path) -> dict[str, Path]:
    """Motion templates generated in code (``client.demo_motion``), written once into ``folder``: by their label."""
    from .demo_motion import demo_template
    from .templates import write_template

    folder.mkdir(parents=True, exist_ok=True)
    motions = {"turn, nod and blink (2 s)": ("turn-nod-blink.pb", demo_template(50)),
               "a slow look around (4 s)": ("look-around.pb", demo_template(100, yaw_deg=25.0, pitch_deg=10.0))}
    paths = {}
    for label, (name, template) in motions.items():
        paths[label] = folder / name
        if not paths[label].exists():
            write_template(template, paths[label])
    return paths


def _still_driving(driving: Path) -> bool:
    """Whether a driving input animates one frame: an image, or a template of one frame."""
    suffix = driving.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return True
    if suffix in TEMPLATE_SUFFIXES:
        try:
            return len(read_template(driving).frames) == 1
        except (TemplateError, OSError):
            return False  # the call says what is wrong with it
    return False


def _one_of(*inputs) -> None:
    for chosen in inputs:
        others = [i for i in inputs if i is not chosen]
        chosen.upload(lambda: [None] * len(others) if len(others) > 1 else None, None, others,
                      show_progress="hidden")


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower().split(" (")[0]).strip("-")


def _widget(gr, option: Option):
    info = option.help or None
    elem_id = f"opt-{option.name}"
    if isinstance(option.default, bool):
        return gr.Checkbox(value=option.default, label=option.label, info=info, elem_id=elem_id)
    if option.choices:
        return gr.Dropdown(list(option.choices), value=option.default, label=option.label, info=info, elem_id=elem_id)
    if isinstance(option.default, str):
        return gr.Textbox(value=option.default, label=option.label, info=info, elem_id=elem_id)
    return gr.Number(value=option.default, label=option.label, info=info, minimum=option.minimum,
                     maximum=option.maximum, step=option.step or 1, precision=0 if option.integer else None,
                     elem_id=elem_id)

