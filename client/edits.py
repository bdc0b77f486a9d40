"""Edits and keyframes for the client: ``Edit`` messages from keyword values, the keyframes JSON format, and the
``EditPortrait`` request/result.

Keyframes JSON (``liveportrait animate --keyframes kf.json``)::

    {"fps": 25,
     "keyframes": [
        {"edit": {}, "duration_s": 0},                                        # start from the source as it is
        {"edit": {"smile": 1.0, "head_yaw": 10}, "duration_s": 1.5, "easing": "ease_in_out"},
        {"edit": {"blink": -20}, "duration_s": 0.5, "easing": "step"}]}

``duration_s`` of a keyframe is the transition from the previous one (the first keyframe is held that long at the
start); easing is linear (default), ease_in, ease_out, ease_in_out or step; ``edit`` holds ``Edit`` fields by name
(see ``liveportrait edit --help`` for each field's range). ``fps`` may also be ``[num, den]``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from protos.liveportrait.v1 import portrait_animator_pb2 as pb

EDIT_FIELDS = tuple(f.name for f in pb.Edit.DESCRIPTOR.fields)
EASINGS = {"linear": pb.LINEAR, "ease_in": pb.EASE_IN, "ease_out": pb.EASE_OUT, "ease_in_out": pb.EASE_IN_OUT,
           "step": pb.STEP}
IMAGE_FORMATS = {"png": pb.PNG, "jpeg": pb.JPEG, "jpg": pb.JPEG}
SOURCE_OPTIONS = tuple(f.name for f in pb.EditSourceOptions.DESCRIPTOR.fields)


def edit_message(edit: pb.Edit | dict | None = None, **values) -> pb.Edit:
    """An ``Edit`` from a message, a dict and/or keyword values (``None`` values are left unset)."""
    message = pb.Edit()
    if isinstance(edit, pb.Edit):
        message.CopyFrom(edit)
    elif edit:
        values = {**edit, **values}
    for name, value in values.items():
        if name not in EDIT_FIELDS:
            raise ValueError(f"unknown edit field {name!r}; the fields are {', '.join(EDIT_FIELDS)}")
        if value is not None:
            setattr(message, name, float(value))
    return message


def keyframes_message(keyframes, fps=None) -> pb.Keyframes:
    """``Keyframes`` from a message, a JSON file path, a parsed JSON document or a list of keyframe dicts."""
    if isinstance(keyframes, pb.Keyframes):
        return keyframes
    if isinstance(keyframes, (str, Path)):
        try:
            keyframes = json.loads(Path(keyframes).read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"the keyframes file {str(keyframes)!r} is not JSON: {exc}") from None
    if isinstance(keyframes, dict):
        fps = keyframes.get("fps", fps)
        keyframes = keyframes.get("keyframes")
    if not isinstance(keyframes, list) or not keyframes:
        raise ValueError("keyframes: expected a non-empty list of {\"edit\": {...}, \"duration_s\": s, \"easing\": e}")
    message = pb.Keyframes()
    for i, k in enumerate(keyframes):
        unknown = set(k) - {"edit", "duration_s", "easing"}
        if unknown:
            raise ValueError(f"keyframe {i}: unknown keys {sorted(unknown)}")
        easing = k.get("easing", "linear")
        if easing not in EASINGS:
            raise ValueError(f"keyframe {i}: unknown easing {easing!r}; choose one of {', '.join(EASINGS)}")
        message.keyframes.add(edit=edit_message(k.get("edit") or {}), duration_s=float(k.get("duration_s", 0.0)),
                              easing=EASINGS[easing])
    if fps is not None:
        num, den = (fps, 1) if isinstance(fps, (int, float)) else fps
        if isinstance(num, float) and not num.is_integer():
            num, den = round(num * 1000), 1000 * den
        message.fps.num, message.fps.den = int(num), int(den)
    return message


def edit_request(source: bytes | None, edit: pb.Edit | dict | None = None, session_id: str | None = None,
                 format: str = "png", jpeg_quality: int | None = None, **source_options) -> pb.EditRequest:
    if format not in IMAGE_FORMATS:
        raise ValueError(f"unknown image format {format!r}; choose png or jpeg")
    options = pb.EditSourceOptions()
    for name, value in source_options.items():
        if name not in SOURCE_OPTIONS:
            raise TypeError(f"unknown option {name!r}; the source options are {', '.join(SOURCE_OPTIONS)}")
        if value is not None:
            if name == "face_hint":
                options.face_hint.extend(value)
            else:
                setattr(options, name, value)
    return pb.EditRequest(source_image=source or b"", session_id=session_id or "", source_options=options,
                          edit=edit_message(edit), format=IMAGE_FORMATS[format], jpeg_quality=jpeg_quality)


@dataclass(frozen=True)
class EditResult:
    image: bytes  # PNG or JPEG
    mime_type: str
    width: int
    height: int
    session_id: str  # pass it to the next edit of the same source
    session_reused: bool
    source_face_box: tuple[float, ...]
    timings: dict[str, float]
    warnings: tuple[str, ...]
    seconds: float
    response: pb.EditResponse

    @classmethod
    def of(cls, response: pb.EditResponse) -> "EditResult":
        return cls(response.image, response.mime_type, response.width, response.height, response.session_id,
                   response.session_reused, tuple(response.source_face_box),
                   {t.stage: t.seconds for t in response.timings}, tuple(response.warnings), response.seconds,
                   response)

    def save(self, path: Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.image)
        return path


def session_lost(error) -> bool:
    """True for the INVALID_ARGUMENT of a session this replica does not have (re-send the image)."""
    import grpc

    return (isinstance(error, grpc.RpcError) and error.code() == grpc.StatusCode.INVALID_ARGUMENT
            and "re-send source_image" in (error.details() or ""))
