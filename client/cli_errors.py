"""What the CLI prints for a failed call: ``error: CODE: message``, the gRPC status code name kept and the server's
message put in the CLI's words. The service names request fields (``options.faces.indices[1]``,
``face_drivings[0]``, ``edit.smile``); here they become the flags and files the user gave (``the 2nd value of
--faces``, ``--face-driving 1=smile.jpg``, ``--smile``). An unreachable service says how to start one; a source
without a face and a server without the animal models say what to try."""
from __future__ import annotations

import re
from pathlib import Path

import grpc

from .cli_options import AUDIO_FLAGS

UNREACHABLE = ("connection refused", "failed to connect to all addresses", "dns resolution failed",
               "name or service not known", "domain name not found", "no address associated", "connect failed",
               "connections to all backends failing")
ANIMAL_HINT = "for an animal, try --model-set animal (with --face-hint or --no-crop-source)"
NO_ANIMAL_MODELS = ("this server does not serve the animal models: start it with `liveportrait up --animal` (a "
                    "deployment: export them with `liveportrait-export --model-set animal` and serve that "
                    "repository beside the human one)")
# the request fields that have a flag of the same name (face_order -> --face-order), as the server names them
FLAG_FIELDS = ("relative_motion", "driving_option", "driving_multiplier", "animation_region", "eye_retargeting",
               "lip_retargeting", "normalize_lip", "paste_back", "crop_source", "crop_scale",
               "crop_vy_ratio", "crop_rotate", "crop_driving_video", "driving_crop_scale", "driving_crop_vy_ratio",
               "source_max_dim", "face_index", "face_order", "face_hint", "source_video_smoothing",
               "source_video_eye_retargeting", "fps_and_audio_from_driving", "crf", "jpeg_quality", "encoder_speed",
               "low_latency")
AUDIO_FIELD_FLAGS = {field: "--" + flag.replace("_", "-") for flag, field in AUDIO_FLAGS.items()}


def error_line(exc: grpc.RpcError, args) -> str:
    """The line printed for a failed call (without ``error: ``): the status code name, then the message."""
    code = exc.code()
    details = exc.details() or ""
    if code == grpc.StatusCode.UNAVAILABLE and any(marker in details.lower() for marker in UNREACHABLE):
        return f"{code.name}: {unreachable(args)}"
    if code == grpc.StatusCode.FAILED_PRECONDITION and "does not serve the animal models" in details:
        return f"{code.name}: {NO_ANIMAL_MODELS}"
    text = in_flags(details, args)
    if (code == grpc.StatusCode.FAILED_PRECONDITION and "no face was found in the source image" in details
            and getattr(args, "model_set", None) != "animal"):
        text = f"{text}; {ANIMAL_HINT}"
    return f"{code.name}: {text}"


def unreachable(args) -> str:
    from .api import default_target

    target = getattr(args, "server", None) or default_target()
    return f"cannot reach the LivePortrait service at {target}: start it with `liveportrait up` (or pass --server)"


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _face_driving(args, index: int) -> str:
    """The ``index``-th --face-driving as given (``1=smile.jpg``): the order the request carries them in."""
    given: dict[str, str] = {}
    for value in getattr(args, "face_driving", None) or []:  # as ``faces_kwargs`` orders them
        face, _, path = value.partition("=")
        given[face.strip()] = path
    items = list(given.items())
    if index >= len(items):
        return "--face-driving"
    face, path = items[index]
    return f"--face-driving {face}={path}"


def _keyframes(args) -> str:
    """The keyframes file given (``--keyframes kf.json``), by name."""
    path = getattr(args, "keyframes", None)
    return Path(path).name if path else "the keyframes file"


def in_flags(details: str, args=None) -> str:
    """The server's message with its request field paths replaced by the CLI's flags and the files given."""
    faces = "--all-faces/--faces/--face-box"
    rules = [
        # a field with its CLI flag in parentheses: keep the flag only
        (r"`[^`]*`(?: \[[^\]]*\])? \(CLI:? (`[^`]*`)\)", lambda m: m[1]),
        (r"\(`[^`]*`, CLI:? (`[^`]*`)\)", lambda m: f"({m[1]})"),
        (r"set (?:the option )?(`--[^`]*`)", lambda m: f"pass {m[1]}"),
        (r"`crop_source: false`", lambda m: "`--no-crop-source`"),
        (r"`(" + "|".join(FLAG_FIELDS) + r")`(?: \[x1, y1, x2, y2\])?", lambda m: f"`--{m[1].replace('_', '-')}`"),
        (r"(?:options\.)?faces\.indices\[(\d+)\]", lambda m: f"the {_ordinal(int(m[1]) + 1)} value of --faces"),
        (r"(?<![\w.])indices\[(\d+)\]", lambda m: f"its {_ordinal(int(m[1]) + 1)} value"),
        (r"(?:options\.)?faces\.boxes\[(\d+)\]", lambda m: f"the {_ordinal(int(m[1]) + 1)} --face-box"),
        (r"(?<![\w.])boxes\[(\d+)\]", lambda m: f"the {_ordinal(int(m[1]) + 1)} --face-box"),
        (r"(?:options\.)?faces\.indices", lambda m: "--faces"),
        (r"(?:options\.)?faces\.boxes", lambda m: "--face-box"),
        (r"options\.faces", lambda m: faces),
        (r"face_drivings\[(\d+)\]\.face is", lambda m: f"{_face_driving(args, int(m[1]))} names face"),
        (r"face_drivings\[(\d+)\](?:\.driving_image|\.driving_template)?",
         lambda m: _face_driving(args, int(m[1]))),
        (r"face_drivings need", lambda m: "--face-driving needs"),
        (r"(?<![\w.])face_drivings", lambda m: "--face-driving"),
        (r"driving_keyframes\.keyframes\[(\d+)\]\.edit\.(\w+)",
         lambda m: f"the {_ordinal(int(m[1]) + 1)} keyframe of {_keyframes(args)}: {m[2]}"),
        (r"driving_keyframes\.keyframes\[(\d+)\]\.(\w+)",
         lambda m: f"the {_ordinal(int(m[1]) + 1)} keyframe of {_keyframes(args)}: {m[2]}"),
        (r"driving_keyframes\.fps", lambda m: f"the fps of {_keyframes(args)}"),
        (r"(?<![\w.])driving_keyframes", lambda m: "--keyframes"),
        (r"(?:options\.)?edit\.(\w+)", lambda m: "--" + m[1].replace("_", "-")),
        (r"options\.edit", lambda m: "an edit (--smile, --head-yaw ...)"),
        (r"(?:options\.)?smoothing\.min_cutoff_hz", lambda m: "--smooth-min-cutoff"),
        (r"(?:options\.)?smoothing\.beta", lambda m: "--smooth-beta"),
        (r"(?:driving_audio|voice)\.options\.(\w+)", lambda m: AUDIO_FIELD_FLAGS.get(m[1], m[1])),
        (r"(?<![\w.])driving_audio", lambda m: "a driving voice"),
        (r"(?<![\w`.-])paste_back and stitching", lambda m: "--paste-back and --stitching"),
        (r"(?<![\w`.-])model_set (HUMAN|ANIMAL)", lambda m: f"--model-set {m[1].lower()}"),
        (r"(?<![\w`.-])fps (?=must|\d)", lambda m: "--fps "),
        (r"(?<![\w`.-])(" + "|".join(FLAG_FIELDS) + r")(?![\w`])", lambda m: "--" + m[1].replace("_", "-")),
    ]
    for pattern, replacement in rules:
        details = re.sub(pattern, replacement, details)
    return details
