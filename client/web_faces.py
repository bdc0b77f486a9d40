"""The web page's **Faces** tab: DetectFaces draws the faces of a photo with their numbers; "Use this photo and
these faces" takes the photo to the Animate tab with the chosen faces (one: the face number option; several: the
"several faces" box too)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import grpc

from .web_options import FACE, FACE_ORDERS, failure_text

if TYPE_CHECKING:
    from .web import WebApp


def draw_faces(path: str, faces) -> "object":
    """The image (EXIF orientation applied, as the service does) with each face's box and number drawn."""
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


class FacesTab:
    def __init__(self, app: "WebApp"):
        self.app = app

    def detect(self, image: str | None, ordering: str):
        """-> (annotated image, face choices update, status)."""
        import gradio as gr

        try:
            if not image:
                raise ValueError("add a photo")
            response = self.app.client.detect(Path(image), ordering, timeout=self.app.timeout)
            if not response.faces:
                return None, gr.update(choices=[], value=[]), "no face found"
            drawn = draw_faces(image, response.faces)
            choices = [(f"face {i} (score {f.score:.2f})", i) for i, f in enumerate(response.faces)]
            return drawn, gr.update(choices=choices, value=[0]), (f"{len(response.faces)} face(s) in "
                                                                f"{response.width}x{response.height}, {ordering}")
        except (grpc.RpcError, ValueError, OSError) as exc:
            text = failure_text("Finding faces", exc, self.app.server)
            gr.Warning(text, title="Finding faces failed")
            return None, gr.update(choices=[], value=[]), text

    def layout(self, animate, tabs) -> None:
        import gradio as gr

        widgets = animate.widgets
        with gr.Row():
            with gr.Column():
                faces_image = gr.Image(label="Photo", type="filepath", height=360, sources=["upload", "clipboard"],
                                       elem_id="faces-image")
                ordering = gr.Dropdown(list(FACE_ORDERS), value="large-small", label="Count faces from",
                                       elem_id="faces-order")
                detect = gr.Button("Find faces", variant="primary", elem_id="faces-detect")
                choice = gr.CheckboxGroup([], label="Faces to animate (one or several)", elem_id="faces-choice")
                use = gr.Button("Use this photo and these faces in Animate", elem_id="faces-use")
            with gr.Column():
                drawn = gr.Image(label="Faces found", interactive=False, height=360, elem_id="faces-drawn")
                faces_status = gr.Textbox(label="Status", interactive=False, elem_id="faces-status")
        detect.click(self.detect, [faces_image, ordering], [drawn, choice, faces_status])
        faces_image.upload(self.detect, [faces_image, ordering], [drawn, choice, faces_status])
        faces_image.clear(lambda: (None, gr.update(choices=[], value=[]), ""), None, [drawn, choice, faces_status])

        def do_use(image, chosen, order):
            """One face: its face number; several: the "several faces" box too."""
            if not image:
                return gr.update(), gr.update(), gr.update(), gr.update(), gr.update(), gr.Tabs()
            chosen = sorted(int(i) for i in chosen or [0])
            several = "" if len(chosen) == 1 else ", ".join(map(str, chosen))
            return (image, chosen[0], order, several, gr.Accordion(open=True), gr.Tabs(selected="animate"))

        use.click(do_use, [faces_image, choice, ordering],
                  [animate.source, widgets["face_index"], widgets["face_order"], animate.faces,
                   animate.accordions[FACE], tabs])
