"""Request options: the protobuf messages -> validated dataclasses with the official LivePortrait defaults."""
from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from protos.liveportrait.v1 import portrait_animator_pb2 as pb

from .edit import EASINGS, FIELDS, Edit, InvalidEditError, Keyframe
from .errors import FailedPrecondition, InvalidRequest
from .face import ORDERINGS, CropConfig
from .face.geometry import DRIVING_CROP
from .keypoints import KeypointOptions
from .media import DEFAULT_ENCODER_SPEED, EncodeSettings
from .quoting import quote
from .smoothing import SmoothingOptions

REGION_NAMES = {pb.ANIMATION_REGION_UNSPECIFIED: "all", pb.ALL: "all", pb.EXP: "exp", pb.POSE: "pose",
                pb.LIP: "lip", pb.EYES: "eyes"}
DRIVING_OPTION_NAMES = {pb.DRIVING_OPTION_UNSPECIFIED: "expression-friendly",
                        pb.EXPRESSION_FRIENDLY: "expression-friendly", pb.POSE_FRIENDLY: "pose-friendly"}
DRIVING_CROP_VALUES = {pb.DRIVING_CROP_AUTO: None, pb.DRIVING_CROP_ON: True, pb.DRIVING_CROP_OFF: False}
MODEL_SET_NAMES = {pb.HUMAN: "human", pb.ANIMAL: "animal"}
ENCODER_SPEED_NAMES = {pb.ENCODER_SPEED_UNSPECIFIED: DEFAULT_ENCODER_SPEED, pb.SMALLEST: "smallest",
                       pb.BALANCED: "balanced", pb.FASTEST: "fastest"}
OUTPUT_FORMAT_NAMES = {pb.OUTPUT_FORMAT_UNSPECIFIED: "mp4", pb.OUTPUT_MP4: "mp4", pb.OUTPUT_PNG: "png",
                       pb.OUTPUT_JPEG: "jpeg"}
ANIMAL_NEEDS_A_BOX = (
    "animal mode cannot detect the animal's face (no animal face detector is served: the official one, X-Pose, "
    "cannot be obtained here): give a box around the animal's face in `face_hint` [x1, y1, x2, y2] (CLI "
    "`--face-hint X1 Y1 X2 Y2`), or set `crop_source: false` (CLI `--no-crop-source`) when the whole image is the "
    "animal's face crop")


@dataclass(frozen=True)
class DrivingCropOptions:
    crop: bool | None = None  # None: only for non-square videos (official)
    box: CropConfig = field(default_factory=lambda: DRIVING_CROP)


@dataclass(frozen=True)
class FaceSelection:
    """``options.faces``: which faces of the source image to animate (exactly one of the three is set)."""

    all: bool = False  # every detected face, in face_order (at most the server's limit)
    indices: tuple[int, ...] = ()  # by index in face_order
    boxes: tuple[tuple[float, float, float, float], ...] = ()  # the face each box holds


@dataclass(frozen=True)
class AnimateOptions:
    keypoints: KeypointOptions = field(default_factory=KeypointOptions)
    paste_back: bool = True
    crop_source: bool = True
    source_crop: CropConfig = field(default_factory=CropConfig)
    driving_crop: DrivingCropOptions = field(default_factory=DrivingCropOptions)
    source_max_dim: int = 1280
    source_division: int = 2
    face_index: int = 0
    face_order: str = "large-small"
    face_hint: np.ndarray | None = None
    crf: int | None = None  # None: the encoder speed's
    encoder_speed: str = DEFAULT_ENCODER_SPEED  # a key of media.ENCODER_SPEEDS
    audio: bool = True
    low_latency: bool = False
    edit: Edit | None = None  # applied on top of the driving motion in every frame
    smoothing: SmoothingOptions | None = None  # steady motion (None: off, the driving motion is used raw)
    model_set: str = "human"  # "animal": the *_animal models and the official animal pipeline
    # a source video: official driving_smooth_observation_variance (0: off) and flag_source_video_eye_retargeting
    source_video_smoothing: float = 3e-7
    source_video_eye_retargeting: bool = False
    faces: FaceSelection | None = None  # several faces (None: one face, face_index / face_hint)
    output_format: str = "mp4"  # "png", "jpeg": one still image (a still driving input)
    jpeg_quality: int = 95

    @property
    def still(self) -> bool:
        """A still image is asked for instead of a video."""
        return self.output_format != "mp4"

    @property
    def encode_settings(self) -> EncodeSettings:
        return EncodeSettings.of_speed(self.encoder_speed, self.crf, self.low_latency)

    @property
    def pastes_back(self) -> bool:
        """Official: paste-back needs cropping and stitching too."""
        return self.paste_back and self.crop_source and self.keypoints.stitching

    @property
    def needs_every_face(self) -> bool:
        """Whether choosing the source face needs every face of the image, small ones beside large ones included
        (``FaceAnalyzer.detect(every_face=...)``, a window search): not for the default choice, the largest face."""
        return (self.faces is not None or self.face_hint is not None or self.face_index != 0
                or self.face_order != "large-small")


def _get(message, name: str, default):
    return getattr(message, name) if message.HasField(name) else default


def _enum(table: dict, value: int, what: str):
    if value not in table:
        raise InvalidRequest(f"unsupported {what} value {value}")
    return table[value]


def _range(name: str, value: float, low: float, high: float) -> float:
    if not np.isfinite(value) or not low <= value <= high:
        raise InvalidRequest(f"{name} must be between {low:g} and {high:g}, got {value:g}")
    return float(value)


def driving_crop_options(mode: int, scale: float, vy_ratio: float) -> DrivingCropOptions:
    box = CropConfig(scale=_range("driving_crop_scale", scale, 1.0, 4.0),
                     vy_ratio=_range("driving_crop_vy_ratio", vy_ratio, -1.0, 1.0), rotate=False)
    return DrivingCropOptions(_enum(DRIVING_CROP_VALUES, mode, "crop_driving_video"), box)


def animate_options(options: pb.AnimationOptions, output: pb.OutputOptions) -> AnimateOptions:
    o = options
    try:
        keypoints = KeypointOptions(
            relative_motion=_get(o, "relative_motion", True),
            driving_option=_enum(DRIVING_OPTION_NAMES, o.driving_option, "driving_option"),
            driving_multiplier=_range("driving_multiplier", _get(o, "driving_multiplier", 1.0), 0.0, 10.0),
            animation_region=_enum(REGION_NAMES, o.animation_region, "animation_region"),
            stitching=_get(o, "stitching", True),
            eye_retargeting=_get(o, "eye_retargeting", False),
            lip_retargeting=_get(o, "lip_retargeting", False),
            normalize_lip=_get(o, "normalize_lip", False),
        )
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None
    source_crop = CropConfig(scale=_range("crop_scale", _get(o, "crop_scale", 2.3), 1.0, 4.0),
                             vy_ratio=_range("crop_vy_ratio", _get(o, "crop_vy_ratio", -0.125), -1.0, 1.0),
                             rotate=_get(o, "crop_rotate", True))
    order = o.face_order or "large-small"
    if order not in ORDERINGS:
        raise InvalidRequest(f"unknown face_order {quote(order)}; choose one of {', '.join(ORDERINGS)}")
    hint = None
    if o.face_hint:
        hint = np.asarray(o.face_hint, np.float64)
        if hint.shape != (4,) or not np.isfinite(hint).all() or hint[2] <= hint[0] or hint[3] <= hint[1]:
            raise InvalidRequest("face_hint must be [x1, y1, x2, y2] with x2 > x1 and y2 > y1")
    crf = _get(output, "crf", None)
    if crf is not None and crf > 51:
        raise InvalidRequest(f"crf must be between 0 and 51, got {crf}")
    max_dim = _get(o, "source_max_dim", 1280)
    division = _get(o, "source_division", 2)
    if not 64 <= max_dim <= 4096:
        raise InvalidRequest(f"source_max_dim must be between 64 and 4096, got {max_dim}")
    if division not in (2, 4, 8, 16):
        raise InvalidRequest(f"source_division must be 2, 4, 8 or 16 (the video needs even sides), got {division}")
    model_set = _enum(MODEL_SET_NAMES, o.model_set, "model_set")
    faces = face_selection(o, model_set) if o.HasField("faces") else None
    if model_set == "animal":
        # official animal pipeline: no eye/lip retargeting, no lip normalisation, its own motion composition
        keypoints = KeypointOptions(driving_multiplier=keypoints.driving_multiplier, stitching=keypoints.stitching,
                                    animal=True)
        if _get(o, "crop_source", True) and hint is None and faces is None:
            raise FailedPrecondition(ANIMAL_NEEDS_A_BOX)
    return AnimateOptions(
        model_set=model_set,
        keypoints=keypoints,
        paste_back=_get(o, "paste_back", True),
        crop_source=_get(o, "crop_source", True),
        source_crop=source_crop,
        driving_crop=driving_crop_options(o.crop_driving_video, _get(o, "driving_crop_scale", 2.2),
                                          _get(o, "driving_crop_vy_ratio", -0.1)),
        source_max_dim=max_dim,
        source_division=division,
        face_index=o.face_index,
        face_order=order,
        face_hint=hint,
        crf=crf,
        encoder_speed=_enum(ENCODER_SPEED_NAMES, output.encoder_speed, "encoder_speed"),
        audio=_get(output, "audio", True),
        low_latency=_get(output, "low_latency", False),
        edit=edit_from_proto(o.edit, "options.edit") if o.HasField("edit") else None,
        smoothing=smoothing_options(o.smoothing) if o.HasField("smoothing") else None,
        faces=faces,
        source_video_smoothing=_range("source_video_smoothing", _get(o, "source_video_smoothing", 3e-7), 0.0, 1.0),
        source_video_eye_retargeting=_get(o, "source_video_eye_retargeting", False),
        output_format=_enum(OUTPUT_FORMAT_NAMES, output.format, "output format"),
        jpeg_quality=int(_range("jpeg_quality", _get(output, "jpeg_quality", 95), 1, 100)),
    )


def face_selection(o: pb.AnimationOptions, model_set: str) -> FaceSelection:
    """``options.faces`` checked: one way of choosing, no repeated index, well-formed boxes, and the options the
    pasting of several faces into one frame needs."""
    f = o.faces
    if [bool(f.all), bool(f.indices), bool(f.boxes)].count(True) != 1:
        raise InvalidRequest("options.faces: set exactly one of `all`, `indices` and `boxes`")
    seen: set[int] = set()
    for k, index in enumerate(f.indices):  # named, not listed: the list is the client's and may be long
        if index in seen:
            raise InvalidRequest(f"options.faces.indices repeats a face: indices[{k}] is face {index} again")
        seen.add(index)
    if len(f.boxes) % 4:
        raise InvalidRequest(f"options.faces.boxes holds [x1, y1, x2, y2] per face (4 values each), got "
                             f"{len(f.boxes)} values")
    boxes = tuple(tuple(float(v) for v in f.boxes[i:i + 4]) for i in range(0, len(f.boxes), 4))
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        if not np.isfinite([x1, y1, x2, y2]).all() or x2 <= x1 or y2 <= y1:
            raise InvalidRequest(f"options.faces.boxes[{i}] must be [x1, y1, x2, y2] with x2 > x1 and y2 > y1")
    if o.face_index or o.face_hint:
        raise InvalidRequest("face_index and face_hint choose one face; with options.faces choose the faces with "
                             "faces.indices or faces.boxes")
    if not _get(o, "crop_source", True):
        raise InvalidRequest("options.faces needs crop_source: each face is cropped from the source image, animated "
                             "and pasted back into it")
    if not (_get(o, "paste_back", True) and _get(o, "stitching", True)):
        raise InvalidRequest("options.faces needs paste_back and stitching: the animated faces are pasted back "
                             "into one frame")
    if model_set == "animal" and not boxes:
        raise FailedPrecondition("options.faces in animal mode needs faces.boxes, one box around each animal's "
                                 "face (no animal face detector is served)")
    return FaceSelection(bool(f.all), tuple(int(i) for i in f.indices), boxes)


def video_source_options(options: AnimateOptions, setup: pb.AnimateSetup) -> AnimateOptions:
    """A source video's request checked: what the official v2v pipeline does not combine with it is refused."""
    refusals = [
        (setup.WhichOneof("driving") == "driving_keyframes", "driving_keyframes (drive a source video with a video, "
                                                              "an image or a motion template)"),
        (options.edit is not None, "options.edit"),
        (options.model_set != "human", "model_set ANIMAL (the official animal pipeline takes a source image)"),
        (bool(setup.face_drivings) or setup.options.HasField("faces"), "several faces (options.faces, "
                                                                       "face_drivings)"),
    ]
    for refused, what in refusals:
        if refused:
            raise InvalidRequest(f"a source video cannot be animated with {what}")
    return options


def smoothing_options(message: pb.Smoothing) -> SmoothingOptions | None:
    """``options.smoothing`` -> the smoother's settings, or None when it is off. The values are checked even when
    ``enabled`` is false, so a typo is reported rather than silently ignored."""
    # float32 on the wire: 0.3 arrives as 0.30000001; its shortest decimal form makes it the default's exact value
    min_cutoff = float(str(np.float32(_get(message, "min_cutoff_hz", 1.0))))
    beta = float(str(np.float32(_get(message, "beta", 0.3))))
    if not np.isfinite(min_cutoff) or min_cutoff <= 0:
        raise InvalidRequest(f"options.smoothing.min_cutoff_hz must be a finite number > 0, got {min_cutoff:g}")
    if not np.isfinite(beta) or beta < 0:
        raise InvalidRequest(f"options.smoothing.beta must be a finite number >= 0, got {beta:g}")
    return SmoothingOptions(min_cutoff_hz=min_cutoff, beta=beta) if message.enabled else None


# ---- driving audio ----------------------------------------------------------------------------------------------

EMOTION_NAMES = {pb.EMOTION_UNSPECIFIED: "neutral", pb.EMOTION_ANGRY: "angry", pb.EMOTION_DISGUST: "disgust",
                 pb.EMOTION_FEAR: "fear", pb.EMOTION_HAPPY: "happy", pb.EMOTION_NEUTRAL: "neutral",
                 pb.EMOTION_SAD: "sad", pb.EMOTION_SURPRISE: "surprise", pb.EMOTION_CONTEMPT: "contempt"}
MAX_SAMPLING_STEPS = 200


@dataclass(frozen=True)
class AudioRequestOptions:
    """``driving_audio.options`` validated, with Ditto's defaults."""

    emotion: str = "neutral"  # one of Ditto's 8 classes (orchestrator/audio/conditions.py EMOTIONS)
    sampling_steps: int = 50
    guidance: float = 2.0
    seed: int = 0
    eye_blinks: bool = True  # Ditto's drive_eye
    head_motion: float = 1.0  # 0..1: share of the head pose from the audio
    eye_open: tuple[float, float] | None = None  # the eye conditions (None: the defaults)
    eye_ball: tuple[float, ...] | None = None  # 6 values


def _eye_condition(name: str, values, size: int, bound: float) -> tuple[float, ...] | None:
    if not values:
        return None
    array = np.asarray(values, np.float64)
    if array.shape != (size,) or not np.all(np.isfinite(array)) or np.abs(array).max() > bound:
        raise InvalidRequest(f"{name} takes {size} values between -{bound:g} and {bound:g} "
                             f"(or none), got {len(array)}")
    return tuple(float(v) for v in array)


def audio_request_options(message: pb.AudioOptions, where: str = "driving_audio.options") -> AudioRequestOptions:
    """``message`` checked; refusals name its fields under ``where`` (``voice.options`` for a live voice)."""
    steps = _get(message, "sampling_steps", 50)
    if not 1 <= steps <= MAX_SAMPLING_STEPS:
        raise InvalidRequest(f"{where}.sampling_steps must be between 1 and {MAX_SAMPLING_STEPS}, "
                             f"got {steps}")
    if message.seed >= 2 ** 63:
        raise InvalidRequest(f"{where}.seed must be below 2^63")
    return AudioRequestOptions(
        emotion=_enum(EMOTION_NAMES, message.emotion, f"{where}.emotion"),
        sampling_steps=int(steps),
        guidance=_range(f"{where}.guidance", _get(message, "guidance", 2.0), 0.0, 10.0),
        seed=int(_get(message, "seed", 0)),
        eye_blinks=_get(message, "eye_blinks", True),
        head_motion=_range(f"{where}.head_motion", _get(message, "head_motion", 1.0), 0.0, 1.0),
        eye_open=_eye_condition(f"{where}.eye_open", message.eye_open, 2, 2.0),
        eye_ball=_eye_condition(f"{where}.eye_ball", message.eye_ball, 6, 1.0),
    )


def audio_driving_options(options: AnimateOptions, setup: pb.AnimateSetup) -> AudioRequestOptions:
    """A request driven by audio checked: what audio-driven motion does not combine with is refused in words."""
    refusals = [
        (setup.WhichOneof("source") == "source_video", "a source video (send a source image)"),
        (options.model_set != "human", "model_set ANIMAL (the motion generator was trained on human faces)"),
        (bool(setup.face_drivings) or setup.options.HasField("faces"), "several faces (options.faces, "
                                                                       "face_drivings)"),
        (options.keypoints.eye_retargeting or options.keypoints.lip_retargeting,
         "eye_retargeting or lip_retargeting (they follow a driving face's eye and lip ratios, which a voice has not)"),
    ]
    for refused, what in refusals:
        if refused:
            raise InvalidRequest(f"driving_audio cannot be combined with {what}")
    return audio_request_options(setup.driving_audio.options)


# ---- edits ------------------------------------------------------------------------------------------------------

EASING_NAMES = {pb.LINEAR: "linear", pb.EASE_IN: "ease_in", pb.EASE_OUT: "ease_out", pb.EASE_IN_OUT: "ease_in_out",
                pb.STEP: "step"}
assert set(EASING_NAMES.values()) == set(EASINGS)
IMAGE_FORMATS = {pb.PNG: ("png", "image/png"), pb.JPEG: ("jpeg", "image/jpeg")}
MAX_KEYFRAME_SECONDS = 3600.0


def edit_from_proto(message: pb.Edit, where: str = "edit") -> Edit:
    """The set fields, validated (NaN, inf, out of the official range -> INVALID_ARGUMENT naming the field)."""
    values = {f.name: float(getattr(message, f.name)) for f in FIELDS if message.HasField(f.name)}
    try:
        return Edit(values)
    except InvalidEditError as exc:
        raise InvalidRequest(str(exc).replace("edit.", f"{where}.", 1)) from None


def keyframes_from_proto(message: pb.Keyframes) -> tuple[list[Keyframe], Fraction]:
    from .templates import InvalidTemplateError, fps_from_proto

    if not message.keyframes:
        raise InvalidRequest("driving_keyframes has no keyframes")
    try:
        fps = fps_from_proto(message.fps) if message.HasField("fps") else Fraction(25)
    except InvalidTemplateError as exc:
        raise InvalidRequest(f"driving_keyframes.fps: {exc}") from None
    keyframes = []
    for i, k in enumerate(message.keyframes):
        where = f"driving_keyframes.keyframes[{i}]"
        _range(f"{where}.duration_s", k.duration_s, 0.0, MAX_KEYFRAME_SECONDS)
        keyframes.append(Keyframe(edit_from_proto(k.edit, f"{where}.edit"), float(k.duration_s),
                                  _enum(EASING_NAMES, k.easing, f"{where}.easing")))
    if sum(k.duration_s for k in keyframes) <= 0:
        raise InvalidRequest("driving_keyframes: the total duration must be more than 0 seconds")
    return keyframes, fps


@dataclass(frozen=True)
class EditRequestOptions:
    source: AnimateOptions  # how the source is prepared (crop, face selection, stitching, paste-back)
    edit: Edit
    image_format: str  # png or jpeg
    mime_type: str
    jpeg_quality: int


def edit_request_options(request: pb.EditRequest) -> EditRequestOptions:
    s = request.source_options
    animation = pb.AnimationOptions(face_index=s.face_index, face_order=s.face_order, face_hint=s.face_hint)
    for name in ("crop_source", "crop_scale", "crop_vy_ratio", "crop_rotate", "source_max_dim", "source_division",
                 "stitching", "paste_back"):
        if s.HasField(name):
            setattr(animation, name, getattr(s, name))
    source = animate_options(animation, pb.OutputOptions())
    image_format, mime = _enum(IMAGE_FORMATS, request.format, "format")
    quality = _get(request, "jpeg_quality", 95)
    if not 1 <= quality <= 100:
        raise InvalidRequest(f"jpeg_quality must be between 1 and 100, got {quality}")
    return EditRequestOptions(source, edit_from_proto(request.edit), image_format, mime, quality)
