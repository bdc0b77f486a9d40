"""The web page's **Edit** tab: the ``Edit`` sliders with a live preview through EditPortrait (the session id of the
first answer is sent back, so later moves skip detection and feature extraction on the server), the original beside
the edit, and "Apply to animation", which takes the portrait and the edit to the Animate tab. Clearing the portrait,
or an edit that failed, clears the preview."""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import grpc

from .web_options import (EASING_NAMES, EDIT_SLIDERS, EDIT_SOURCE_OPTIONS, OFFICIAL_SLIDERS, Slider, animate_kwargs,
                          edit_json, failure_text, slider_edit)

from .web_animate import ADVANCED

if TYPE_CHECKING:
    from .web import WebApp

PREVIEW_HEIGHT = 420


class EditTab:
    def __init__(self, app: "WebApp"):
        self.app = app

    def edit(self, source: str | None, session: dict | None, source_values: dict, *values):
        """-> ((the portrait, its edit) for the before/after view, or None; session state; status). ``session``
        holds the session id of the previous answer for this source and the source's measured eye/lip ratios."""
        import gradio as gr

        session = dict(session or {})
        try:
            if not source:
                raise ValueError("add a portrait to edit")
            ratios = session.get("ratios")  # the eye/lip sliders start at these: not an edit
            key = json.dumps([source, {k: source_values[k] for k in sorted(source_values)}])
            if session.get("source") != key:  # another image or other crop/face options: a new session
                session = {"source": key}
            edit = slider_edit(dict(zip((s.name for s in EDIT_SLIDERS), values)), ratios)
            options = animate_kwargs({k: v for k, v in source_values.items() if k in EDIT_SOURCE_OPTIONS})
            response = self.app.client.edit(Path(source), edit, session_id=session.get("session_id") or None,
                                            format="jpeg", jpeg_quality=95, timeout=self.app.timeout, **options)
            session["session_id"] = response.session_id
            session.setdefault("ratios", _source_ratios(response.response))
            path = self.app.result_dir() / f"{Path(source).stem}-edited.jpg"  # JPEG: ~10x faster to encode than PNG
            path.write_bytes(response.image)
            status = (f"{response.width}x{response.height} in {response.seconds * 1000:.0f} ms "
                      f"({'session reused' if response.session_reused else 'source prepared'}: "
                      + ", ".join(f"{stage} {s * 1000:.0f}" for stage, s in response.timings.items()) + " ms)")
            status += "".join(f"\nWARNING: {w}" for w in response.warnings)
            return (source, str(path)), session, status
        except (grpc.RpcError, ValueError, OSError) as exc:
            text = failure_text("Edit", exc, self.app.server)
            gr.Warning(text, title="Edit failed")
            return None, {}, text

    def layout(self, animate, tabs) -> None:
        """The tab's content; ``animate``: the Animate tab (its source, edit option and crop/face widgets)."""
        import gradio as gr

        with gr.Row():
            with gr.Column():
                edit_source = gr.Image(label="Portrait to edit", type="filepath", height=260,
                                       sources=["upload", "clipboard"], elem_id="edit-source")
                gr.Markdown("Crop and face: as in the Animate tab's options.")
                sliders = {}
                with gr.Accordion("Expression and pose (LivePortrait)", open=True):
                    for s in OFFICIAL_SLIDERS:
                        sliders[s.name] = _slider(gr, s)
                with gr.Accordion("More expressions (ComfyUI-AdvancedLivePortrait)", open=False):
                    for s in EDIT_SLIDERS[len(OFFICIAL_SLIDERS):]:
                        sliders[s.name] = _slider(gr, s)
            with gr.Column(elem_classes=["sticky-column"]):
                preview = gr.ImageSlider(label="Before / after (drag the line)", type="filepath", format="jpeg",
                                         interactive=False, height=PREVIEW_HEIGHT, max_height=PREVIEW_HEIGHT,
                                         elem_id="edit-preview")
                with gr.Row():
                    reset = gr.Button("Reset sliders", elem_id="edit-reset")
                    apply = gr.Button("Apply to animation", variant="primary", elem_id="edit-apply")
                with gr.Row(equal_height=True):
                    seconds = gr.Number(1.0, label="seconds to reach it", minimum=0, step=0.1, min_width=100,
                                        elem_id="edit-keyframe-seconds")
                    easing = gr.Dropdown(list(EASING_NAMES), value="ease_in_out", label="easing", min_width=100,
                                         elem_id="edit-keyframe-easing")
                    add_keyframe = gr.Button("Add as a keyframe", elem_id="edit-add-keyframe")
                edit_status = gr.Textbox(label="Status", interactive=False, lines=2, elem_id="edit-status")
        session = gr.State({})
        widgets = animate.widgets
        source_names = list(EDIT_SOURCE_OPTIONS)

        def do_edit(src, state, *values):
            source_values = dict(zip(source_names, values[:len(source_names)]))
            preview_path, state, text = self.edit(src, state, source_values, *values[len(source_names):])
            ratios = state.get("ratios") or {}
            updates = [gr.update(value=ratios[n]) if n in ratios and state.get("fresh", True)
                       else gr.update() for n in ("eye_ratio", "lip_ratio")]
            state["fresh"] = False
            return preview_path, state, text, *updates

        edit_inputs = [edit_source, session, *(widgets[n] for n in source_names), *sliders.values()]
        edit_outputs = [preview, session, edit_status, sliders["eye_ratio"], sliders["lip_ratio"]]
        edit_source.upload(lambda: {}, None, session).then(
            _neutral_values, None, list(sliders.values())).then(do_edit, edit_inputs, edit_outputs)
        edit_source.clear(lambda: (None, {}, ""), None, [preview, session, edit_status])
        for slider in sliders.values():
            slider.release(do_edit, edit_inputs, edit_outputs, trigger_mode="always_last")

        def do_reset(state):
            ratios = (state or {}).get("ratios") or {}
            return [gr.update(value=ratios.get(s.name, s.neutral)) for s in EDIT_SLIDERS]

        reset.click(do_reset, session, list(sliders.values())).then(do_edit, edit_inputs, edit_outputs)

        def do_apply(src, state, *values):
            """The portrait and its edit to the Animate tab."""
            if not src:
                gr.Warning("add a portrait to edit first", title="Apply to animation")
                return gr.update(), gr.update(), gr.update(), gr.Tabs()
            edit = slider_edit(dict(zip(sliders, values)), (state or {}).get("ratios"))
            return src, edit_json(edit), gr.Accordion(open=True), gr.Tabs(selected="animate")

        def do_add_keyframe(rows, duration, ease, state, *values):
            """This expression as the next row of the Animate tab's keyframes (the first row: the start, at once)."""
            edit = slider_edit(dict(zip(sliders, values)), (state or {}).get("ratios"))
            rows = [list(r) for r in rows or [] if any(v not in ("", None) for v in r)]
            rows.append([0.0 if not rows else float(duration or 0), "linear" if not rows else ease, edit_json(edit)])
            return rows, f"keyframe {len(rows)} added (the Animate tab's advanced options)"

        add_keyframe.click(do_add_keyframe, [animate.keyframe_table, seconds, easing, session, *sliders.values()],
                           [animate.keyframe_table, edit_status])
        apply.click(do_apply, [edit_source, session, *sliders.values()],
                    [animate.source, animate.edit_option, animate.accordions[ADVANCED], tabs])


def _source_ratios(response) -> dict:
    ratios = {}
    if len(response.source_eye_ratio):
        ratios["eye_ratio"] = round(float(sum(response.source_eye_ratio) / len(response.source_eye_ratio)), 2)
    if response.source_lip_ratio:
        ratios["lip_ratio"] = round(float(response.source_lip_ratio), 2)
    return ratios


def _neutral_values():
    return [s.neutral for s in EDIT_SLIDERS]


def _slider(gr, s: Slider):
    return gr.Slider(s.minimum, s.maximum, value=s.neutral, step=s.step, label=s.label, elem_id=f"edit-{s.name}")
