"""The request messages of the service built from local files and keyword options: ``AnimationOptions`` by name,
the AnimatePortrait and ExtractMotion request streams (a source video, then a driving video, in 1 MiB chunks), and
the checks of local inputs that run before any call (a missing file, a refused template: ``InputError``,
``TemplateError``)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

from protos.liveportrait.v1 import portrait_animator_pb2 as pb

from .edits import edit_message
from .faces import faces_message
from .templates import TEMPLATE_SUFFIXES, TemplateError, read_template

CHUNK_BYTES = 1024 * 1024
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".avi", ".mkv", ".webm", ".gif")
AUDIO_SUFFIXES = (".wav", ".mp3", ".m4a", ".aac", ".ogg", ".opus", ".flac")  # a voice drives the portrait
EMOTIONS = {"angry": pb.EMOTION_ANGRY, "disgust": pb.EMOTION_DISGUST, "fear": pb.EMOTION_FEAR,
            "happy": pb.EMOTION_HAPPY, "neutral": pb.EMOTION_NEUTRAL, "sad": pb.EMOTION_SAD,
            "surprise": pb.EMOTION_SURPRISE, "contempt": pb.EMOTION_CONTEMPT}  # Ditto's 8 classes
REGIONS = {"all": pb.ALL, "exp": pb.EXP, "pose": pb.POSE, "lip": pb.LIP, "eyes": pb.EYES}
DRIVING_OPTIONS = {"expression-friendly": pb.EXPRESSION_FRIENDLY, "pose-friendly": pb.POSE_FRIENDLY}
DRIVING_CROP = {"auto": pb.DRIVING_CROP_AUTO, "on": pb.DRIVING_CROP_ON, "off": pb.DRIVING_CROP_OFF}
MODEL_SETS = {"human": pb.HUMAN, "animal": pb.ANIMAL}
# the output's H.264 encoder: CPU per frame against bytes at equal quality (the server's default: fastest)
ENCODER_SPEEDS = {"smallest": pb.SMALLEST, "balanced": pb.BALANCED, "fastest": pb.FASTEST}

def animation_options(**options) -> pb.AnimationOptions:
    """``AnimationOptions`` from keyword arguments named like its fields; enums by name (``animation_region="lip"``,
    ``driving_option="pose-friendly"``, ``crop_driving_video="on"``, ``model_set="animal"``). Unset fields keep the
    official defaults."""
    values = dict(options)
    for name, table in (("animation_region", REGIONS), ("driving_option", DRIVING_OPTIONS),
                        ("crop_driving_video", DRIVING_CROP), ("model_set", MODEL_SETS)):
        if isinstance(values.get(name), str):
            if values[name] not in table:
                raise ValueError(f"unknown {name} {values[name]!r}; choose one of {', '.join(table)}")
            values[name] = table[values[name]]
    if values.get("edit") is not None:
        values["edit"] = edit_message(values["edit"])
    if values.get("smoothing") is not None:
        values["smoothing"] = smoothing_message(values["smoothing"])
    if values.get("faces") is not None:
        values["faces"] = faces_message(values["faces"])
    return pb.AnimationOptions(**{k: v for k, v in values.items() if v is not None})


def encoder_speed(name: str | None) -> int | None:
    """``OutputOptions.encoder_speed`` by name (None: the server's default)."""
    if name is None:
        return None
    if name not in ENCODER_SPEEDS:
        raise ValueError(f"unknown encoder_speed {name!r}; choose one of {', '.join(ENCODER_SPEEDS)}")
    return ENCODER_SPEEDS[name]


OUTPUT_FORMATS = {"mp4": pb.OUTPUT_MP4, "png": pb.OUTPUT_PNG, "jpeg": pb.OUTPUT_JPEG, "jpg": pb.OUTPUT_JPEG}
STILL_SUFFIXES = (".png", ".jpg", ".jpeg")


def output_format(name: str | None, output: Path | None = None) -> int:
    """``OutputOptions.format`` by name (mp4, png, jpeg), or else by the output file's suffix: .png, .jpg and .jpeg
    ask for a still image (a still driving input), anything else for the MP4."""
    if name is not None:
        if name.lower() not in OUTPUT_FORMATS:
            raise ValueError(f"unknown output format {name!r}; choose one of mp4, png, jpeg")
        return OUTPUT_FORMATS[name.lower()]
    suffix = Path(output).suffix.lower() if output is not None else ""
    return OUTPUT_FORMATS[suffix.lstrip(".")] if suffix in STILL_SUFFIXES else pb.OUTPUT_FORMAT_UNSPECIFIED


def audio_options(emotion: str | None = None, sampling_steps: int | None = None, guidance: float | None = None,
                  seed: int | None = None, eye_blinks: bool | None = None, head_motion: float | None = None,
                  eye_open: list[float] | None = None, eye_ball: list[float] | None = None) -> pb.AudioOptions:
    """How a driving voice becomes motion (``AudioOptions``; unset: Ditto's defaults): ``emotion`` by name (one of
    ``EMOTIONS``), DDIM ``sampling_steps`` [50], ``guidance`` [2.0], ``seed`` [0] (same seed, same video),
    ``eye_blinks`` [True: the eyes move with the speech], ``head_motion`` [1.0] (0..1: head pose from the audio),
    the eye conditions ``eye_open`` (2 values) and ``eye_ball`` (6 values) [eyes open, irises centred]."""
    values = {"sampling_steps": sampling_steps, "guidance": guidance, "seed": seed, "eye_blinks": eye_blinks,
              "head_motion": head_motion, "eye_open": eye_open, "eye_ball": eye_ball}
    if emotion is not None:
        if emotion not in EMOTIONS:
            raise ValueError(f"unknown emotion {emotion!r}; choose one of {', '.join(EMOTIONS)}")
        values["emotion"] = EMOTIONS[emotion]
    return pb.AudioOptions(**{k: v for k, v in values.items() if v is not None})


def face_driving_message(face: int, driving: Path | bytes | pb.MotionTemplate) -> pb.FaceDriving:
    """One ``setup.face_drivings`` entry: the driving input of the animated face at position ``face``: a motion
    template (message or file), or an image (file or bytes). A video is refused here: extract its motion first
    (``extract_motion``; the clients' ``animate`` does it)."""
    if isinstance(driving, pb.MotionTemplate):
        return pb.FaceDriving(face=face, driving_template=driving)
    if isinstance(driving, bytes):
        return pb.FaceDriving(face=face, driving_image=driving)
    kind = driving_kind(driving)
    if kind == "image":
        return pb.FaceDriving(face=face, driving_image=_read(driving, f"driving image of face {face}"))
    if kind == "video":
        raise InputError(f"the driving of face {face} {str(driving)!r} is a video: extract its motion first "
                         "(extract_motion) and pass the template")
    if kind == "audio":
        raise InputError(f"the driving of face {face} {str(driving)!r} is a sound file: a voice drives one face, "
                         "as the main driving input")
    path = _checked_file(driving, f"driving template of face {face}")
    try:
        return pb.FaceDriving(face=face, driving_template=read_template(path))
    except TemplateError as exc:
        raise TemplateError(f"the driving template of face {face} {str(path)!r} is refused: {exc}") from None


def _face_videos(face_drivings: dict | None) -> dict[int, Path]:
    """The per-face driving inputs that are video files (their motion is extracted before the call)."""
    return {face: Path(d) for face, d in (face_drivings or {}).items()
            if isinstance(d, (str, Path)) and driving_kind(Path(d)) == "video"}


def smoothing_message(value) -> pb.Smoothing:
    """``options.smoothing`` from ``True``/``False``, a dict (``{"min_cutoff_hz": 0.5, "beta": 0.3}``: enabled unless
    it says ``"enabled": False``) or a ``Smoothing`` message."""
    if isinstance(value, pb.Smoothing):
        return value
    if isinstance(value, bool):
        return pb.Smoothing(enabled=value)
    if isinstance(value, dict):
        unknown = set(value) - {"enabled", "min_cutoff_hz", "beta"}
        if unknown:
            raise ValueError(f"unknown smoothing setting(s) {', '.join(sorted(unknown))}; use enabled, "
                             "min_cutoff_hz, beta")
        return pb.Smoothing(**{"enabled": True, **{k: v for k, v in value.items() if v is not None}})
    raise ValueError(f"smoothing must be True/False, a dict or a Smoothing message, got {value!r}")


def driving_kind(path: Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix in TEMPLATE_SUFFIXES:
        return "template"
    if suffix in IMAGE_SUFFIXES:
        return "image"
    if suffix in VIDEO_SUFFIXES:
        return "video"
    if suffix in AUDIO_SUFFIXES:
        return "audio"
    raise ValueError(f"cannot tell what the driving file {path} is from its suffix {suffix!r}: use a video "
                     f"({', '.join(VIDEO_SUFFIXES)}), an image ({', '.join(IMAGE_SUFFIXES)}), a motion template "
                     f"({', '.join(TEMPLATE_SUFFIXES)}) or a voice ({', '.join(AUDIO_SUFFIXES)})")


class InputError(ValueError):
    """A local input (source, driving file) is missing, unreadable or malformed; raised before any call is made."""


def _checked_file(path: Path, what: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise InputError(f"the {what} {str(path)!r} does not exist")
    if not path.is_file():
        raise InputError(f"the {what} {str(path)!r} is not a file")
    if not os.access(path, os.R_OK):
        raise InputError(f"the {what} {str(path)!r} cannot be read (permission denied)")
    return path


def _read(path: Path, what: str) -> bytes:
    path = _checked_file(path, what)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"the {what} {str(path)!r} cannot be read: {exc.strerror or exc}") from None


def _chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            yield chunk


def animate_setup(source: Path | bytes, driving: Path | pb.MotionTemplate, options: pb.AnimationOptions | None = None,
                  output: pb.OutputOptions | None = None, *, face_drivings: dict | None = None,
                  audio_options: pb.AudioOptions | None = None) -> tuple[pb.AnimateSetup, Path | None]:
    """The setup message and the driving video or audio to stream after it (None: nothing follows). Every local
    input is read, converted and checked here, before a call starts: a missing file or a refused template raises
    ``InputError`` / ``TemplateError`` with its reason instead of failing inside gRPC's request iterator.
    ``face_drivings``: {position among the animated faces: its own driving (``face_driving_message``)};
    ``audio_options``: how a driving voice (a sound file) becomes motion (``audio_options()``)."""
    setup = pb.AnimateSetup(options=options or pb.AnimationOptions(), output=output or pb.OutputOptions())
    if is_video(source):  # video-to-video: its bytes are streamed first (see ``_stream``)
        source = _checked_file(source, "source video")
        setup.source_video.CopyFrom(pb.SourceVideo(size_bytes=source.stat().st_size, filename=source.name))
    else:
        setup.source_image = source if isinstance(source, bytes) else _read(source, "source image")
    video = None
    if isinstance(driving, pb.MotionTemplate):
        setup.driving_template.CopyFrom(driving)
    elif isinstance(driving, pb.Keyframes):
        setup.driving_keyframes.CopyFrom(driving)
    else:
        kind = driving_kind(driving)
        if kind == "template":
            path = _checked_file(driving, "driving template")
            try:
                setup.driving_template.CopyFrom(read_template(path))
            except TemplateError as exc:
                raise TemplateError(f"the driving template {str(path)!r} is refused: {exc}") from None
        elif kind == "image":
            setup.driving_image = _read(driving, "driving image")
        elif kind == "audio":
            video = _checked_file(driving, "driving audio")
            setup.driving_audio.CopyFrom(pb.DrivingAudio(size_bytes=video.stat().st_size, filename=video.name,
                                                         options=audio_options or pb.AudioOptions()))
        else:
            video = _checked_file(driving, "driving video")
            setup.driving_video.CopyFrom(pb.DrivingVideo(size_bytes=video.stat().st_size, filename=video.name))
    if audio_options is not None and not setup.HasField("driving_audio"):
        raise InputError("audio options apply to a driving voice: give a sound file as the driving input "
                         f"({', '.join(AUDIO_SUFFIXES)})")
    setup.face_drivings.extend(face_driving_message(face, d) for face, d in (face_drivings or {}).items())
    return setup, video


def animate_requests(source: Path | bytes, driving: Path | pb.MotionTemplate, options: pb.AnimationOptions | None = None,
                     output: pb.OutputOptions | None = None, *, face_drivings: dict | None = None,
                     audio_options: pb.AudioOptions | None = None) -> Iterator[pb.AnimateRequest]:
    """The request stream: the setup message, then the driving video (or audio) in chunks. The inputs are checked
    when this is called (``animate_setup``), not when the stream is iterated."""
    setup, video = animate_setup(source, driving, options, output, face_drivings=face_drivings,
                                 audio_options=audio_options)
    return _stream(pb.AnimateRequest, setup, video, Path(source) if setup.HasField("source_video") else None)


def is_video(source: Path | bytes) -> bool:
    """A source given as a path with a video suffix is a source video (video-to-video)."""
    return not isinstance(source, bytes) and Path(source).suffix.lower() in VIDEO_SUFFIXES


def _stream(message, setup, video: Path | None, source_video: Path | None = None) -> Iterator:
    yield message(setup=setup)
    if source_video is not None:
        for chunk in _chunks(source_video):
            yield message(source_chunk=chunk)
    if video is not None:
        for chunk in _chunks(video):
            yield message(driving_chunk=chunk)


def extract_requests(video: Path, crop_driving_video: str = "auto", *, source: Path | bytes | None = None,
                     audio_options: pb.AudioOptions | None = None,
                     source_options: pb.AnimationOptions | None = None) -> Iterator[pb.ExtractMotionRequest]:
    """The ExtractMotion request stream; the file is checked when this is called. A sound file (a voice) needs the
    ``source`` portrait its motion is generated for, with ``audio_options`` and the source's crop and face selection
    (``source_options``) as the AnimatePortrait the template stands for."""
    if Path(video).suffix.lower() in AUDIO_SUFFIXES:
        if source is None:
            raise InputError(f"the motion of the voice {str(video)!r} is generated for a portrait: give the source "
                             "image too")
        audio = _checked_file(video, "driving audio")
        setup = pb.ExtractMotionSetup(
            driving_audio=pb.DrivingAudio(size_bytes=audio.stat().st_size, filename=audio.name,
                                          options=audio_options or pb.AudioOptions()),
            source_image=source if isinstance(source, bytes) else _read(source, "source image"),
            source_options=source_options or pb.AnimationOptions())
        return _stream(pb.ExtractMotionRequest, setup, audio)
    if audio_options is not None or source is not None:
        raise InputError("a source and audio options apply to the motion of a voice: give a sound file "
                         f"({', '.join(AUDIO_SUFFIXES)})")
    video = _checked_file(video, "driving video")
    setup = pb.ExtractMotionSetup(driving_video=pb.DrivingVideo(size_bytes=video.stat().st_size, filename=video.name),
                                  crop_driving_video=DRIVING_CROP[crop_driving_video])
    return _stream(pb.ExtractMotionRequest, setup, video)
