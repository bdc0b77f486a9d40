"""Several faces for the client: ``options.faces`` from simple values, and from the CLI's face flags
(``cli_options`` defines them).

    client.animate("group.jpg", "talk.mp4", "out.mp4", faces="all")                      # every detected face
    client.animate("group.jpg", "talk.mp4", "out.mp4", faces=[0, 2], face_drivings={1: "smile.jpg"})
    client.animate("group.jpg", "talk.mp4", "out.mp4", faces={"boxes": [[10, 20, 110, 140], [300, 40, 380, 130]]})

``face_drivings`` keys are positions among the selected faces (0: the first); values are images, templates or
videos (the clients extract a video's motion with ExtractMotion first, ``api.face_driving_message``).
"""
from __future__ import annotations

from pathlib import Path

from protos.liveportrait.v1 import portrait_animator_pb2 as pb


def faces_message(value) -> pb.FaceSelection:
    """``options.faces`` from ``"all"`` (every detected face), a list of indices (``[0, 2]``, in ``face_order``), a
    dict (``{"boxes": [[x1, y1, x2, y2], ...]}``, ``{"indices": [...]}``, ``{"all": True}``) or a ``FaceSelection``."""
    if isinstance(value, pb.FaceSelection):
        return value
    if value == "all":
        return pb.FaceSelection(all=True)
    if isinstance(value, dict):
        unknown = set(value) - {"all", "indices", "boxes"}
        if unknown:
            raise ValueError(f"unknown faces setting(s) {', '.join(sorted(unknown))}; use all, indices, boxes")
        boxes = [float(v) for box in value.get("boxes") or [] for v in box]
        return pb.FaceSelection(all=bool(value.get("all")), indices=value.get("indices") or [], boxes=boxes)
    if isinstance(value, (list, tuple)) and all(isinstance(i, int) for i in value):
        return pb.FaceSelection(indices=value)
    raise ValueError(f"faces must be 'all', a list of face indices, a dict or a FaceSelection message, got {value!r}")


def faces_kwargs(all_faces: bool, faces: str | None, boxes: list | None,
                 drivings: list[str] | None) -> tuple[dict | None, dict | None]:
    """``PortraitClient.animate(faces=..., face_drivings=...)`` from the face flags (None: not sent)."""
    selection = {}
    if all_faces:
        selection["all"] = True
    if faces is not None:
        try:
            selection["indices"] = [int(v) for v in faces.split(",")]
        except ValueError:
            raise ValueError(f"--faces takes face indices separated by commas (0,2), got {faces!r}") from None
    if boxes:
        selection["boxes"] = boxes
    own = {}
    for value in drivings or []:
        index, _, path = value.partition("=")
        if not index.strip().isdigit() or not path:
            raise ValueError(f"--face-driving takes INDEX=PATH (1=smile.jpg), got {value!r}")
        own[int(index)] = Path(path)
    if own and not selection:
        raise ValueError("--face-driving needs --all-faces, --faces or --face-box")
    return selection or None, own or None


def faces_line(summary: pb.Summary) -> str:
    """The CLI's line naming the animated faces: index in face_order, box, driving."""
    return f"faces animated ({len(summary.faces)}): " + ", ".join(
        f"#{f.index} [{', '.join(f'{v:.0f}' for v in f.box)}] {f.driving}" for f in summary.faces)
