"""The web page's controls and what they send: every AnimatePortrait option as ``liveportrait animate`` has it (name,
official default, range), the ``Edit`` sliders (ranges from ``orchestrator.edit.FIELDS``), and their conversion to
``PortraitClient`` keywords and messages. No Gradio here: ``web.py`` builds the widgets from these tables."""
from __future__ import annotations

import json
from dataclasses import dataclass

import grpc

from orchestrator.edit import FIELDS, OFFICIAL
from protos.liveportrait.v1 import portrait_animator_pb2 as pb

from .messages import DRIVING_CROP, DRIVING_OPTIONS, ENCODER_SPEEDS, MODEL_SETS, REGIONS

FACE_ORDERS = ("large-small", "small-large", "left-right", "right-left", "top-bottom", "bottom-top")
STAGE_NAMES = {v.number: v.name.lower() for v in pb.Stage.DESCRIPTOR.values}


@dataclass(frozen=True)
class Option:
    """One AnimatePortrait option as ``liveportrait animate`` has it: name (the ``--flag`` with underscores, also the
    ``PortraitClient.animate`` keyword), the official default, choices or a range; on the page, a plain title, a
    one-line ``help`` and the accordion (``group``) it sits in."""
    name: str
    default: object
    title: str
    group: str
    help: str = ""
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    integer: bool = False

    @property
    def label(self) -> str:
        return self.title

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


# The page's accordions, in order, with the options of each; ranges are the orchestrator's checks
# (orchestrator/options.py), defaults the official CLI's.
MOTION, FACE, SOURCE_CROP, CROP_DRIVING, RETARGETING, STITCHING, SMOOTHING, VIDEO, OUTPUT = (
    "Motion", "Which face", "Source crop", "Driving crop", "Retargeting", "Stitching and paste-back", "Smoothing",
    "Video-to-video (a source video)", "Output video")
GROUPS = (MOTION, FACE, SOURCE_CROP, CROP_DRIVING, RETARGETING, STITCHING, SMOOTHING, VIDEO, OUTPUT)
ANIMATE_OPTIONS: tuple[Option, ...] = (
    Option("relative_motion", True, "relative motion", MOTION,
           "move from the source's own pose and expression (off: copy the driving face's)"),
    Option("driving_option", "expression-friendly", "driving style", MOTION,
           "expression-friendly keeps the source's look; pose-friendly follows the driving head more closely",
           choices=tuple(DRIVING_OPTIONS)),
    Option("driving_multiplier", 1.0, "motion strength", MOTION, "1 = as driven; below 1 calmer, above 1 stronger",
           minimum=0.0, maximum=10.0, step=0.05),
    Option("animation_region", "all", "animated region", MOTION,
           "what follows the driving face: everything, expression, pose, lips or eyes", choices=tuple(REGIONS)),
    Option("face_index", 0, "face number", FACE, "which face of the source, counted in the face order (see Faces)",
           minimum=0, step=1, integer=True),
    Option("face_order", "large-small", "face order", FACE, "how faces are counted", choices=FACE_ORDERS),
    Option("face_hint", "", "face box", FACE, "X1 Y1 X2 Y2 around the face to animate, in source pixels (optional)"),
    Option("model_set", "human", "subject", FACE,
           "animal: for cats and dogs; needs a face box or source crop off (no animal face detector)",
           choices=tuple(MODEL_SETS)),
    Option("crop_source", True, "crop the source face", SOURCE_CROP,
           "find the face and animate a crop around it (off: the whole image is the face)"),
    Option("crop_scale", 2.3, "source crop size", SOURCE_CROP, "crop side as a multiple of the face's size",
           minimum=1.0, maximum=4.0, step=0.05),
    Option("crop_vy_ratio", -0.125, "source crop vertical shift", SOURCE_CROP,
           "moves the crop up (negative) or down, as a share of its size", minimum=-1.0, maximum=1.0, step=0.005),
    Option("crop_rotate", True, "straighten a tilted source face", SOURCE_CROP),
    Option("source_max_dim", 1280, "largest source side (pixels)", SOURCE_CROP, "larger sources are scaled down",
           minimum=64, maximum=4096, step=1, integer=True),
    Option("crop_driving_video", "auto", "crop the driving face", CROP_DRIVING,
           "auto: crop non-square videos; on: always; off: use frames as they are", choices=tuple(DRIVING_CROP)),
    Option("driving_crop_scale", 2.2, "driving crop size", CROP_DRIVING, "crop side as a multiple of the face's size",
           minimum=1.0, maximum=4.0, step=0.05),
    Option("driving_crop_vy_ratio", -0.1, "driving crop vertical shift", CROP_DRIVING,
           "moves the crop up (negative) or down, as a share of its size", minimum=-1.0, maximum=1.0, step=0.005),
    Option("eye_retargeting", False, "eyes from the driving face", RETARGETING,
           "match the driving eyes' openness"),
    Option("lip_retargeting", False, "lips from the driving face", RETARGETING, "match the driving lips' openness"),
    Option("normalize_lip", False, "close the source's lips first", RETARGETING,
           "start from closed lips when the source's mouth is open"),
    Option("stitching", True, "stitching", STITCHING, "blend the animated face into the shoulders smoothly"),
    Option("paste_back", True, "paste back into the photo", STITCHING,
           "off: the result is the 512x512 face crop"),
    Option("smooth", False, "steady the motion", SMOOTHING, "filter jitter out of the driving motion (not official)"),
    Option("smooth_min_cutoff", 1.0, "steadiness while still (Hz)", SMOOTHING, "lower = steadier", minimum=0.01,
           step=0.1),
    Option("smooth_beta", 0.3, "speed response", SMOOTHING, "higher = less lag on fast moves", minimum=0.0,
           step=0.05),
    Option("source_video_smoothing", 3e-7, "source motion smoothing", VIDEO,
           "larger = smoother source video motion, 0 = off", minimum=0.0, maximum=1.0, step=1e-7),
    Option("source_video_eye_retargeting", False, "keep the source video's eyes open", VIDEO,
           "eyes as open as in its first frame"),
    Option("fps_and_audio_from_driving", False, "frame rate and sound from the driving video", VIDEO,
           "off: from the source video"),
    Option("encoder_speed", "fastest", "encoder speed", OUTPUT,
           "smallest: the fewest bytes, most server CPU; balanced; fastest: the least CPU, about 3x the bytes",
           choices=tuple(ENCODER_SPEEDS)),
    Option("crf", None, "video quality (CRF)", OUTPUT, "H.264 quality 0-51, lower = better and larger; empty: the "
           "encoder speed's (18 smallest, 19 balanced and fastest)", minimum=0, maximum=51, step=1, integer=True),
    Option("audio", True, "keep the driving video's sound", OUTPUT),
    Option("low_latency", False, "stream while rendering", OUTPUT, "a video that can play before it is finished"),
)
OPTION_BY_NAME = {o.name: o for o in ANIMATE_OPTIONS}
# AnimationOptions fields that also prepare the Edit tab's source (EditSourceOptions: same names and defaults).
EDIT_SOURCE_OPTIONS = tuple(f.name for f in pb.EditSourceOptions.DESCRIPTOR.fields if f.name in OPTION_BY_NAME)


@dataclass(frozen=True)
class Slider:
    """One ``Edit`` field: its official slider range and the value that means "no change"."""
    name: str
    minimum: float
    maximum: float
    neutral: float = 0.0
    step: float = 0.5
    label: str = ""


# How each Edit field looks on the page (slider step, label); its range and neutral value are the server's
# (orchestrator.edit.FIELDS, the one table the validation and the CLI use too).
SLIDER_LOOK: dict[str, tuple[float, str]] = {
    "eye_ratio": (0.01, "eyes open ratio (source's own by default)"),
    "lip_ratio": (0.01, "lip open ratio (source's own by default)"),
    "head_pitch": (0.5, "relative pitch"),
    "head_yaw": (0.5, "relative yaw"),
    "head_roll": (0.5, "relative roll"),
    "mov_x": (0.01, "x-axis movement"),
    "mov_y": (0.01, "y-axis movement"),
    "mov_z": (0.01, "z-axis movement"),
    "lip_pout": (0.01, "pouting"),
    "lip_purse": (0.5, "pursing"),
    "lip_grin": (0.5, "grin"),
    "lip_open": (1, "lip close <-> open"),
    "smile": (0.01, "smile"),
    "wink": (0.5, "wink"),
    "eyebrow": (0.5, "eyebrow"),
    "gaze_x": (0.5, "eyeball direction x"),
    "gaze_y": (0.5, "eyeball direction y"),
    "rotate_pitch": (0.5, "rotate pitch"),
    "rotate_yaw": (0.5, "rotate yaw"),
    "rotate_roll": (0.5, "rotate roll"),
    "blink": (0.5, "blink"),
    "alp_eyebrow": (0.5, "eyebrow"),
    "alp_wink": (0.5, "wink"),
    "pupil_x": (0.5, "pupil x"),
    "pupil_y": (0.5, "pupil y"),
    "aaa": (1, "aaa"),
    "eee": (0.5, "eee"),
    "woo": (0.5, "woo"),
    "alp_smile": (0.01, "smile"),
    "src_ratio": (0.01, "source expression ratio"),
}
EDIT_SLIDERS: tuple[Slider, ...] = tuple(
    Slider(f.name, f.low, f.high, f.low if f.neutral is None else f.neutral, *SLIDER_LOOK[f.name]) for f in FIELDS)
OFFICIAL_SLIDERS = tuple(s for s, f in zip(EDIT_SLIDERS, FIELDS) if f.origin == OFFICIAL)  # the rest: ALP's


def unreachable_text(server: str) -> str:
    """The page's words for a service it cannot reach (its banner, toasts and status boxes)."""
    return f"cannot reach the LivePortrait service at {server}: start it with `liveportrait up`"


# gRPC's own words for a connection that failed (the service's own UNAVAILABLE answers, such as draining, are
# already in the project's words and are shown as they are)
_CONNECTION_FAILED = ("failed to connect", "connection refused", "dns resolution failed", "connections to all "
                      "backends failing", "socket closed", "connection reset", "name resolution")


def error_parts(exc: BaseException, server: str = "") -> tuple[str, str]:
    """(the message for people, a details line with the gRPC status) of a failed action; never a stack trace."""
    if isinstance(exc, grpc.RpcError) and callable(getattr(exc, "code", None)):
        code, details = exc.code(), exc.details() or ""
        if code == grpc.StatusCode.UNAVAILABLE and any(w in details.lower() for w in _CONNECTION_FAILED):
            return unreachable_text(server or "its address"), f"gRPC status {code.name}"
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return "the service took too long to answer", f"gRPC status {code.name}"
        return details or code.name.lower().replace("_", " "), f"gRPC status {code.name}"
    return str(exc) or type(exc).__name__, ""


def failure_text(action: str, exc: BaseException, server: str = "") -> str:
    """"<action> failed: <message>" and the details line: a failed action's toast and status box (Gradio titles
    toasts by their kind, so the action leads the text)."""
    return f"{action} failed: {error_text(exc, server)}"


def error_text(exc: BaseException, server: str = "") -> str:
    """The message and, on a second line, the details (for a status box)."""
    message, details = error_parts(exc, server)
    return f"{message}\n({details})" if details else message


def animate_kwargs(values: dict) -> dict:
    """Keyword arguments of ``PortraitClient.animate`` from the option widgets: only options that differ from their
    default are sent (unset fields mean the official defaults to the server)."""
    kwargs = {}
    for name, value in values.items():
        option = OPTION_BY_NAME[name]
        if name == "face_hint":
            text = (value or "").replace(",", " ").split()
            if not text:
                continue
            try:
                box = [float(v) for v in text]
            except ValueError:
                raise ValueError(f"face hint must be four numbers X1 Y1 X2 Y2, got {value!r}") from None
            if len(box) != 4:
                raise ValueError(f"face hint must be four numbers X1 Y1 X2 Y2, got {value!r}")
            kwargs[name] = box
            continue
        if value is None:
            continue
        if option.integer:
            value = int(round(float(value)))
        elif isinstance(option.default, float):
            value = float(value)
        if value != option.default:
            kwargs[name] = value
    smooth = {k: kwargs.pop(k, None) for k in ("smooth", "smooth_min_cutoff", "smooth_beta")}
    if smooth["smooth"]:  # the two settings only count with the checkbox (options.smoothing)
        kwargs["smoothing"] = {"min_cutoff_hz": smooth["smooth_min_cutoff"], "beta": smooth["smooth_beta"]}
    return kwargs


def slider_edit(values: dict, source_ratios: dict | None = None) -> "pb.Edit":
    """An ``Edit`` with the sliders that are off their neutral value (eye/lip ratio: off the source's own)."""
    fields = {}
    for slider in EDIT_SLIDERS:
        value = values.get(slider.name)
        if value is None:
            continue
        neutral = (source_ratios or {}).get(slider.name, slider.neutral) if slider.name in ("eye_ratio",
                                                                                           "lip_ratio") else slider.neutral
        if neutral is None or abs(float(value) - float(neutral)) > 1e-6:
            fields[slider.name] = float(value)
    return pb.Edit(**fields)


def edit_json(edit: "pb.Edit") -> str:
    """The Animate tab's ``edit`` option: Edit fields by name (the dict ``PortraitClient.animate(edit=...)`` takes)."""
    return json.dumps({f.name: round(value, 4) for f, value in edit.ListFields()})


def json_value(text: str, what: str):
    """A JSON document typed into the page (None when empty)."""
    if not (text or "").strip():
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{what} is not JSON: {exc}") from None


def faces_value(text: str | None):
    """``PortraitClient.animate(faces=...)`` from the page's "several faces" box: "all", face numbers separated by
    commas ("0, 2"), or empty (None: one face, the face number option)."""
    text = (text or "").strip().lower()
    if not text:
        return None
    if text == "all":
        return "all"
    try:
        return [int(v) for v in text.replace(" ", ",").split(",") if v]
    except ValueError:
        raise ValueError(f"several faces: write all, or face numbers separated by commas (0, 2), got {text!r}") \
            from None


KEYFRAME_COLUMNS = ("seconds", "easing", "expression")  # the keyframe table: duration_s, easing, edit (JSON)
EASING_NAMES = ("linear", "ease_in", "ease_out", "ease_in_out", "step")  # client/edits.py EASINGS


def keyframes_json(rows: list[list], fps: float = 25.0) -> str:
    """The keyframes JSON (client/edits.py) of the keyframe table's rows; empty rows are skipped, "" for none."""
    keyframes = []
    for i, row in enumerate(rows or []):
        seconds, easing, expression = (list(row) + ["", "", ""])[:3]
        if seconds in ("", None) and not expression:
            continue
        try:
            duration = float(seconds or 0)
        except (TypeError, ValueError):
            raise ValueError(f"keyframe {i + 1}: seconds must be a number, got {seconds!r}") from None
        edit = json_value(str(expression or ""), f"keyframe {i + 1}'s expression") or {}
        keyframes.append({"edit": edit, "duration_s": duration, "easing": (easing or "linear").strip()})
    return json.dumps({"fps": fps, "keyframes": keyframes}) if keyframes else ""


def keyframe_rows(text: str) -> list[list]:
    """The keyframe table's rows of a keyframes JSON (the inverse of ``keyframes_json``)."""
    document = json_value(text, "the keyframes") or {}
    keyframes = document.get("keyframes", []) if isinstance(document, dict) else document
    return [[k.get("duration_s", 0), k.get("easing", "linear"), json.dumps(k.get("edit", {}))] for k in keyframes]


def summary_text(summary: pb.Summary, face_files: list[str] = ()) -> str:
    """The status of a finished animation; ``face_files``: the names of the faces' own driving files, in order."""
    fps = summary.fps.num / max(summary.fps.den, 1)
    lines = [f"{summary.frames} frame{'' if summary.frames == 1 else 's'}, {summary.width}x{summary.height}, {fps:.3f} fps, audio "
             f"{'yes' if summary.has_audio else 'no'}, {summary.video_bytes / 1e6:.2f} MB in {summary.seconds:.1f} s",
             "stages: " + ", ".join(f"{t.stage} {t.seconds:.2f} s" for t in summary.timings)]
    if summary.faces:
        own = {f"face_drivings[{i}]": name for i, name in enumerate(face_files)}
        lines.append(f"faces animated ({len(summary.faces)}): " + ", ".join(
            f"face {f.index} driven by {own.get(f.driving, 'the driving input')}" for f in summary.faces))
    lines += [f"WARNING: {w}" for w in summary.warnings]
    return "\n".join(lines)
