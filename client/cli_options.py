"""The flag groups of ``liveportrait``: the connection, the animation options (the official LivePortrait CLI's, with
the subset a live stream takes), the driving voice, the edit sliders and the output suffixes each command writes.

Every flag says what it does and its default in brackets (``[on]``, ``[2.3]``); a flag whose default is a plain
value gets it from ``DefaultsFormatter`` when its help does not say it already."""
from __future__ import annotations

import argparse
from pathlib import Path

from .messages import DRIVING_CROP, DRIVING_OPTIONS, EMOTIONS, ENCODER_SPEEDS, MODEL_SETS, REGIONS

# the official ``sort_by_direction`` orderings (orchestrator/face/ordering.py ORDERINGS, checked by a test)
FACE_ORDERS = ("large-small", "small-large", "left-right", "right-left", "top-bottom", "bottom-top")
FACE_ORDER_HELP = ("how detected faces are numbered for --face-index and --faces: large-small (largest first), "
                   "small-large, left-right, right-left, top-bottom, bottom-top [large-small]")
FACE_HINT_HELP = ("a box around the face to animate, in source pixels: the detected face overlapping it most (animal "
                  "mode: the animal's face box); unset: the face at --face-index")
KEYFRAMES_HELP = ("instead of --driving: a keyframes JSON file, edits interpolated over time: {\"fps\": 25, "
                  "\"keyframes\": [{\"edit\": {\"smile\": 1.0, \"head_yaw\": 10}, \"duration_s\": 1.5, \"easing\": "
                  "\"ease_in_out\"}, ...]}; \"edit\" holds the edit sliders by name (their flag names with _ for -, "
                  "e.g. head_yaw), \"duration_s\" is the transition from the previous keyframe (the first one is "
                  "held that long), \"easing\" is linear (default), ease_in, ease_out, ease_in_out or step")

# AnimatePortrait options a live stream does not have: those of the MP4 and of a source video
VIDEO_ONLY = ("crf", "encoder_speed", "audio", "low_latency", "source_video_smoothing",
              "source_video_eye_retargeting", "fps_and_audio_from_driving")
OPTION_NAMES = ("relative_motion", "driving_option", "driving_multiplier", "animation_region", "stitching",
                "eye_retargeting", "lip_retargeting", "normalize_lip", "paste_back", "crop_source", "crop_scale",
                "crop_vy_ratio", "crop_rotate", "crop_driving_video", "driving_crop_scale", "driving_crop_vy_ratio",
                "source_max_dim", "face_index", "face_order", "face_hint", "model_set", "source_video_smoothing",
                "source_video_eye_retargeting", "fps_and_audio_from_driving")
SMOOTHING_FLAGS = ("smooth", "smooth_min_cutoff", "smooth_beta")  # -> options.smoothing (``smoothing_kwarg``)
LIVE_OPTION_NAMES = tuple(name for name in OPTION_NAMES if name not in VIDEO_ONLY)
AUDIO_FLAGS = {"emotion": "emotion", "audio_steps": "sampling_steps", "guidance": "guidance", "seed": "seed",
               "head_motion": "head_motion", "eye_blinks": "eye_blinks", "eye_open": "eye_open",
               "eye_ball": "eye_ball"}  # flag (dest) -> AudioOptions field

# what each command writes, by the output's suffix; another suffix is refused before any call
OUTPUT_SUFFIXES = {
    "animate": ((".mp4", ".png", ".jpg", ".jpeg"), "animate writes .mp4 (or .png/.jpg for a still driving input)"),
    "edit": ((".png", ".jpg", ".jpeg"), "edit writes .png or .jpg (the service edits to PNG or JPEG)"),
    "extract-motion": ((".pb", ".json"), "extract-motion writes a motion template: .pb (binary) or .json"),
    "live": ((".mp4",), "live writes .mp4"),
    "demo": ((".mp4",), "demo writes .mp4"),
}


class DefaultsFormatter(argparse.HelpFormatter):
    """Adds ``[default]`` to a flag's help when the help does not show one: ``[off]`` for a switch, the value
    otherwise (None: nothing; such flags say in words what happens when they are not given)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "[" in text or not action.option_strings or action.default in (None, argparse.SUPPRESS):
            return text
        if action.default is False and action.nargs == 0:
            return f"{text} [off]"
        return f"{text} [%(default)s]"


def check_output(command: str, output: Path | None) -> None:
    """Refuses an output whose suffix the command does not write (before any work), naming the accepted ones."""
    if output is None or command not in OUTPUT_SUFFIXES:
        return
    suffixes, says = OUTPUT_SUFFIXES[command]
    if Path(output).suffix.lower() not in suffixes:
        raise ValueError(f"-o {output}: {says}")


def add_server(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("connection")
    g.add_argument("--server", default=None, help="the LivePortrait service, HOST:PORT [$LIVEPORTRAIT_SERVER or "
                                                  "localhost:50051]")
    g.add_argument("--ca", type=Path, default=None, help="CA certificates (PEM) to reach the service over TLS "
                                                         "[plaintext]")
    g.add_argument("--cert", type=Path, default=None, help="client certificate (PEM) for mutual TLS [none]")
    g.add_argument("--key", type=Path, default=None, help="the client certificate's private key (PEM) [none]")
    g.add_argument("--api-key", default=None, help="API key, sent as 'authorization: Bearer <key>' "
                                                   "[$LIVEPORTRAIT_API_KEY]")
    g.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                   help="deadline of the call [none; health: 5]")


def add_face_choice(g) -> None:
    """--face-index, --face-order and --face-hint: which face of the source is animated or edited."""
    g.add_argument("--face-index", type=int, default=None, help="which source face: its index in --face-order [0]")
    g.add_argument("--face-order", default=None, choices=FACE_ORDERS, metavar="ORDER", help=FACE_ORDER_HELP)
    g.add_argument("--face-hint", type=float, nargs=4, default=None, metavar=("X1", "Y1", "X2", "Y2"),
                   help=FACE_HINT_HELP)


def add_face_selection(g) -> None:
    """``animate``'s flags for several faces (``faces_kwargs`` turns them into the request's)."""
    g.add_argument("--all-faces", action="store_true", help="animate every detected face, in --face-order (at most "
                                                            "the server's limit, 8 by default)")
    g.add_argument("--faces", default=None, metavar="I,J",
                   help="animate these faces: their indices in --face-order, separated by commas [one face]")
    g.add_argument("--face-box", type=float, nargs=4, action="append", default=None, metavar=("X1", "Y1", "X2", "Y2"),
                   help="animate the face in this box (repeat for several faces) [one face]")
    g.add_argument("--face-driving", action="append", default=None, metavar="INDEX=PATH",
                   help="the driving of the INDEX-th selected face (0: the first): an image, a template, or a video "
                        "(its motion is extracted first); repeatable [every face follows --driving]")


def add_animation_options(p: argparse.ArgumentParser, live: bool = False) -> None:
    """The AnimationOptions flags; ``live``: only those a live stream takes (no MP4, no source video options)."""
    g = p.add_argument_group("animation options (defaults: the official LivePortrait CLI's)")
    flag = argparse.BooleanOptionalAction
    g.add_argument("--relative-motion", action=flag, default=None,
                   help="apply the driving motion relative to its first frame (off: absolute) [on]")
    g.add_argument("--driving-option", choices=list(DRIVING_OPTIONS), default=None,
                   help="expression-friendly: the driving expression scaled by --driving-multiplier; pose-friendly: "
                        "the driving head pose followed more closely [expression-friendly]")
    g.add_argument("--driving-multiplier", type=float, default=None,
                   help="strength of the driving expression (expression-friendly) [1.0]")
    g.add_argument("--animation-region", choices=list(REGIONS), default=None,
                   help="what follows the driving input: all, exp (expression), pose (head), lip, eyes [all]")
    g.add_argument("--stitching", action=flag, default=None,
                   help="stitch the animated face to the source's shoulders (stitching network) [on]")
    g.add_argument("--eye-retargeting", action=flag, default=None,
                   help="eyes open as much as the driving's (eye retargeting network) [off]")
    g.add_argument("--lip-retargeting", action=flag, default=None,
                   help="lips open as much as the driving's (lip retargeting network) [off]")
    g.add_argument("--normalize-lip", action=flag, default=None,
                   help="close the source's lips before animating [off]")
    g.add_argument("--paste-back", action=flag, default=None,
                   help="paste the animated face back into the whole source image (off: the face crop) [on]")
    g.add_argument("--crop-source", action=flag, default=None,
                   help="detect and crop the source face (off: the whole image is the face crop) [on]")
    g.add_argument("--crop-scale", type=float, default=None,
                   help="size of the source face crop, relative to the face box, 1-4 [2.3]")
    g.add_argument("--crop-vy-ratio", type=float, default=None,
                   help="vertical shift of the source face crop, in face heights, -1 to 1 (negative: up) [-0.125]")
    g.add_argument("--crop-rotate", action=flag, default=None, help="rotate the source face crop upright [on]")
    g.add_argument("--crop-driving-video", choices=list(DRIVING_CROP), default=None,
                   help="crop the driving frames around their face: auto (non-square videos only), on, off [auto]")
    g.add_argument("--driving-crop-scale", type=float, default=None,
                   help="size of the driving face crop, relative to the face box [2.2]")
    g.add_argument("--driving-crop-vy-ratio", type=float, default=None,
                   help="vertical shift of the driving face crop, in face heights [-0.1]")
    g.add_argument("--source-max-dim", type=int, default=None,
                   help="the source's longer side is scaled down to at most this many pixels, 64-4096 [1280]")
    add_face_choice(g)
    g.add_argument("--model-set", choices=list(MODEL_SETS), default=None,
                   help="human, or animal: the official animal models and pipeline; needs --face-hint or "
                        "--no-crop-source (no animal face detector) [human]")
    g.add_argument("--smooth", action=flag, default=None,
                   help="steady motion: a causal One-Euro filter over the driving motion (not official) [off]")
    g.add_argument("--smooth-min-cutoff", type=float, default=None, metavar="HZ",
                   help="with --smooth: cut-off while still, lower = steadier [1.0]")
    g.add_argument("--smooth-beta", type=float, default=None, metavar="B",
                   help="with --smooth: cut-off rise with speed, higher = less lag [0.3]")
    if live:
        return
    g.add_argument("--source-video-smoothing", type=float, default=None, metavar="VARIANCE",
                   help="source video: how much the source's motion is smoothed (the official "
                        "driving_smooth_observation_variance), larger = smoother, 0 = off [3e-07]")
    g.add_argument("--source-video-eye-retargeting", action=flag, default=None,
                   help="source video: every frame's eyes as open as in its first frame (official) [off]")
    g.add_argument("--fps-and-audio-from-driving", action=flag, default=None,
                   help="source video: take the output's fps and audio from the driving video, not the source [off]")
    o = p.add_argument_group("output video")
    o.add_argument("--crf", type=int, default=None,
                   help="H.264 quality, 0-51, lower: better and larger; unset: the encoder speed's (18 for smallest, "
                        "19 for balanced and fastest)")
    o.add_argument("--encoder-speed", choices=tuple(ENCODER_SPEEDS), default=None,
                   help="H.264 encoder at equal quality: smallest = fewest bytes, most server CPU (libx264 veryfast); "
                        "balanced (superfast) = ~0.7x the CPU, ~2.2x the bytes; fastest (ultrafast) = ~0.4x the CPU, "
                        "~3x the bytes [fastest]")
    o.add_argument("--audio", action=flag, default=None,
                   help="mux the audio (the driving video's or voice's; a source video's) [on]")
    o.add_argument("--low-latency", action=flag, default=None,
                   help="stream for playback while rendering: each chunk's frames arrive at most one chunk later [off]")


def add_audio_options(g) -> None:
    """The flags of a driving voice (AudioOptions)."""
    flag = argparse.BooleanOptionalAction
    g.add_argument("--emotion", choices=list(EMOTIONS), default=None, help="the voice's emotion [neutral]")
    g.add_argument("--audio-steps", type=int, default=None, metavar="N",
                   help="sampling steps per window, 1-200; fewer = faster, rougher motion [50; live: 10]")
    g.add_argument("--guidance", type=float, default=None, help="classifier-free guidance weight, 0-10 [2.0]")
    g.add_argument("--seed", type=int, default=None, help="noise seed: the same seed gives the same video [0]")
    g.add_argument("--head-motion", type=float, default=None, metavar="SHARE",
                   help="0 to 1: how much head motion comes from the voice; 0 keeps the source's pose [1.0]")
    g.add_argument("--eye-blinks", action=flag, default=None,
                   help="the eyes move with the speech (blinks, gaze kept ahead); off: the source's eyes [on]")
    g.add_argument("--eye-open", type=float, nargs=2, default=None, metavar=("LEFT", "RIGHT"),
                   help="eye openness the motion is generated for, 0-2 (open eyes ~0.9-1.2) [the source's, measured on "
                        "its face]")
    g.add_argument("--eye-ball", type=float, nargs=6, default=None, metavar="V",
                   help="iris offsets the motion is generated for (Ditto's 6 values, -1-1) [centred: 0 ...]")


def add_edit_options(g) -> None:
    """One flag per edit slider (``Edit`` field), with its range (the official sliders')."""
    from orchestrator.edit import FIELDS

    for f in FIELDS:
        g.add_argument("--" + f.name.replace("_", "-"), type=float, default=None, dest="edit_" + f.name,
                       metavar="V", help=f"{f.meaning}, {f.low:g} to {f.high:g} ({f.origin.split()[0]}) "
                                         "[unset: unchanged]")


def edit_values(args) -> dict:
    """The edit sliders given, by ``Edit`` field name."""
    return {k[5:]: v for k, v in vars(args).items() if k.startswith("edit_") and v is not None}
