from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Emotion(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EMOTION_UNSPECIFIED: _ClassVar[Emotion]
    EMOTION_ANGRY: _ClassVar[Emotion]
    EMOTION_DISGUST: _ClassVar[Emotion]
    EMOTION_FEAR: _ClassVar[Emotion]
    EMOTION_HAPPY: _ClassVar[Emotion]
    EMOTION_NEUTRAL: _ClassVar[Emotion]
    EMOTION_SAD: _ClassVar[Emotion]
    EMOTION_SURPRISE: _ClassVar[Emotion]
    EMOTION_CONTEMPT: _ClassVar[Emotion]

class ModelSet(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HUMAN: _ClassVar[ModelSet]
    ANIMAL: _ClassVar[ModelSet]

class DrivingOption(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DRIVING_OPTION_UNSPECIFIED: _ClassVar[DrivingOption]
    EXPRESSION_FRIENDLY: _ClassVar[DrivingOption]
    POSE_FRIENDLY: _ClassVar[DrivingOption]

class AnimationRegion(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ANIMATION_REGION_UNSPECIFIED: _ClassVar[AnimationRegion]
    ALL: _ClassVar[AnimationRegion]
    EXP: _ClassVar[AnimationRegion]
    POSE: _ClassVar[AnimationRegion]
    LIP: _ClassVar[AnimationRegion]
    EYES: _ClassVar[AnimationRegion]

class DrivingCrop(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DRIVING_CROP_AUTO: _ClassVar[DrivingCrop]
    DRIVING_CROP_ON: _ClassVar[DrivingCrop]
    DRIVING_CROP_OFF: _ClassVar[DrivingCrop]

class OutputFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OUTPUT_FORMAT_UNSPECIFIED: _ClassVar[OutputFormat]
    OUTPUT_MP4: _ClassVar[OutputFormat]
    OUTPUT_PNG: _ClassVar[OutputFormat]
    OUTPUT_JPEG: _ClassVar[OutputFormat]

class EncoderSpeed(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ENCODER_SPEED_UNSPECIFIED: _ClassVar[EncoderSpeed]
    SMALLEST: _ClassVar[EncoderSpeed]
    BALANCED: _ClassVar[EncoderSpeed]
    FASTEST: _ClassVar[EncoderSpeed]

class Stage(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STAGE_UNSPECIFIED: _ClassVar[Stage]
    RECEIVE: _ClassVar[Stage]
    DECODE: _ClassVar[Stage]
    DETECT: _ClassVar[Stage]
    MOTION: _ClassVar[Stage]
    KEYPOINTS: _ClassVar[Stage]
    RENDER: _ClassVar[Stage]
    PASTE_BACK: _ClassVar[Stage]
    ENCODE: _ClassVar[Stage]

class ImageFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PNG: _ClassVar[ImageFormat]
    JPEG: _ClassVar[ImageFormat]

class Easing(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LINEAR: _ClassVar[Easing]
    EASE_IN: _ClassVar[Easing]
    EASE_OUT: _ClassVar[Easing]
    EASE_IN_OUT: _ClassVar[Easing]
    STEP: _ClassVar[Easing]

class AudioEncoding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PCM_F32LE: _ClassVar[AudioEncoding]
    PCM_S16LE: _ClassVar[AudioEncoding]

class FrameFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FRAME_ENCODED: _ClassVar[FrameFormat]
    FRAME_I420: _ClassVar[FrameFormat]
EMOTION_UNSPECIFIED: Emotion
EMOTION_ANGRY: Emotion
EMOTION_DISGUST: Emotion
EMOTION_FEAR: Emotion
EMOTION_HAPPY: Emotion
EMOTION_NEUTRAL: Emotion
EMOTION_SAD: Emotion
EMOTION_SURPRISE: Emotion
EMOTION_CONTEMPT: Emotion
HUMAN: ModelSet
ANIMAL: ModelSet
DRIVING_OPTION_UNSPECIFIED: DrivingOption
EXPRESSION_FRIENDLY: DrivingOption
POSE_FRIENDLY: DrivingOption
ANIMATION_REGION_UNSPECIFIED: AnimationRegion
ALL: AnimationRegion
EXP: AnimationRegion
POSE: AnimationRegion
LIP: AnimationRegion
EYES: AnimationRegion
DRIVING_CROP_AUTO: DrivingCrop
DRIVING_CROP_ON: DrivingCrop
DRIVING_CROP_OFF: DrivingCrop
OUTPUT_FORMAT_UNSPECIFIED: OutputFormat
OUTPUT_MP4: OutputFormat
OUTPUT_PNG: OutputFormat
OUTPUT_JPEG: OutputFormat
ENCODER_SPEED_UNSPECIFIED: EncoderSpeed
SMALLEST: EncoderSpeed
BALANCED: EncoderSpeed
FASTEST: EncoderSpeed
STAGE_UNSPECIFIED: Stage
RECEIVE: Stage
DECODE: Stage
DETECT: Stage
MOTION: Stage
KEYPOINTS: Stage
RENDER: Stage
PASTE_BACK: Stage
ENCODE: Stage
PNG: ImageFormat
JPEG: ImageFormat
LINEAR: Easing
EASE_IN: Easing
EASE_OUT: Easing
EASE_IN_OUT: Easing
STEP: Easing
PCM_F32LE: AudioEncoding
PCM_S16LE: AudioEncoding
FRAME_ENCODED: FrameFormat
FRAME_I420: FrameFormat

class AnimateRequest(_message.Message):
    __slots__ = ("setup", "driving_chunk", "source_chunk")
    SETUP_FIELD_NUMBER: _ClassVar[int]
    DRIVING_CHUNK_FIELD_NUMBER: _ClassVar[int]
    SOURCE_CHUNK_FIELD_NUMBER: _ClassVar[int]
    setup: AnimateSetup
    driving_chunk: bytes
    source_chunk: bytes
    def __init__(self, setup: _Optional[_Union[AnimateSetup, _Mapping]] = ..., driving_chunk: _Optional[bytes] = ..., source_chunk: _Optional[bytes] = ...) -> None: ...

class AnimateSetup(_message.Message):
    __slots__ = ("source_image", "source_video", "driving_video", "driving_image", "driving_template", "driving_keyframes", "driving_audio", "options", "output", "face_drivings")
    SOURCE_IMAGE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_VIDEO_FIELD_NUMBER: _ClassVar[int]
    DRIVING_VIDEO_FIELD_NUMBER: _ClassVar[int]
    DRIVING_IMAGE_FIELD_NUMBER: _ClassVar[int]
    DRIVING_TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    DRIVING_KEYFRAMES_FIELD_NUMBER: _ClassVar[int]
    DRIVING_AUDIO_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    FACE_DRIVINGS_FIELD_NUMBER: _ClassVar[int]
    source_image: bytes
    source_video: SourceVideo
    driving_video: DrivingVideo
    driving_image: bytes
    driving_template: MotionTemplate
    driving_keyframes: Keyframes
    driving_audio: DrivingAudio
    options: AnimationOptions
    output: OutputOptions
    face_drivings: _containers.RepeatedCompositeFieldContainer[FaceDriving]
    def __init__(self, source_image: _Optional[bytes] = ..., source_video: _Optional[_Union[SourceVideo, _Mapping]] = ..., driving_video: _Optional[_Union[DrivingVideo, _Mapping]] = ..., driving_image: _Optional[bytes] = ..., driving_template: _Optional[_Union[MotionTemplate, _Mapping]] = ..., driving_keyframes: _Optional[_Union[Keyframes, _Mapping]] = ..., driving_audio: _Optional[_Union[DrivingAudio, _Mapping]] = ..., options: _Optional[_Union[AnimationOptions, _Mapping]] = ..., output: _Optional[_Union[OutputOptions, _Mapping]] = ..., face_drivings: _Optional[_Iterable[_Union[FaceDriving, _Mapping]]] = ...) -> None: ...

class SourceVideo(_message.Message):
    __slots__ = ("size_bytes", "filename")
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    size_bytes: int
    filename: str
    def __init__(self, size_bytes: _Optional[int] = ..., filename: _Optional[str] = ...) -> None: ...

class FaceDriving(_message.Message):
    __slots__ = ("face", "driving_image", "driving_template")
    FACE_FIELD_NUMBER: _ClassVar[int]
    DRIVING_IMAGE_FIELD_NUMBER: _ClassVar[int]
    DRIVING_TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    face: int
    driving_image: bytes
    driving_template: MotionTemplate
    def __init__(self, face: _Optional[int] = ..., driving_image: _Optional[bytes] = ..., driving_template: _Optional[_Union[MotionTemplate, _Mapping]] = ...) -> None: ...

class FaceSelection(_message.Message):
    __slots__ = ("all", "indices", "boxes")
    ALL_FIELD_NUMBER: _ClassVar[int]
    INDICES_FIELD_NUMBER: _ClassVar[int]
    BOXES_FIELD_NUMBER: _ClassVar[int]
    all: bool
    indices: _containers.RepeatedScalarFieldContainer[int]
    boxes: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, all: _Optional[bool] = ..., indices: _Optional[_Iterable[int]] = ..., boxes: _Optional[_Iterable[float]] = ...) -> None: ...

class DrivingVideo(_message.Message):
    __slots__ = ("size_bytes", "filename")
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    size_bytes: int
    filename: str
    def __init__(self, size_bytes: _Optional[int] = ..., filename: _Optional[str] = ...) -> None: ...

class DrivingAudio(_message.Message):
    __slots__ = ("size_bytes", "filename", "options")
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    size_bytes: int
    filename: str
    options: AudioOptions
    def __init__(self, size_bytes: _Optional[int] = ..., filename: _Optional[str] = ..., options: _Optional[_Union[AudioOptions, _Mapping]] = ...) -> None: ...

class AudioOptions(_message.Message):
    __slots__ = ("emotion", "sampling_steps", "guidance", "seed", "eye_blinks", "head_motion", "eye_open", "eye_ball")
    EMOTION_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_STEPS_FIELD_NUMBER: _ClassVar[int]
    GUIDANCE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    EYE_BLINKS_FIELD_NUMBER: _ClassVar[int]
    HEAD_MOTION_FIELD_NUMBER: _ClassVar[int]
    EYE_OPEN_FIELD_NUMBER: _ClassVar[int]
    EYE_BALL_FIELD_NUMBER: _ClassVar[int]
    emotion: Emotion
    sampling_steps: int
    guidance: float
    seed: int
    eye_blinks: bool
    head_motion: float
    eye_open: _containers.RepeatedScalarFieldContainer[float]
    eye_ball: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, emotion: _Optional[_Union[Emotion, str]] = ..., sampling_steps: _Optional[int] = ..., guidance: _Optional[float] = ..., seed: _Optional[int] = ..., eye_blinks: _Optional[bool] = ..., head_motion: _Optional[float] = ..., eye_open: _Optional[_Iterable[float]] = ..., eye_ball: _Optional[_Iterable[float]] = ...) -> None: ...

class AnimationOptions(_message.Message):
    __slots__ = ("relative_motion", "driving_option", "driving_multiplier", "animation_region", "stitching", "eye_retargeting", "lip_retargeting", "normalize_lip", "paste_back", "crop_source", "crop_scale", "crop_vy_ratio", "crop_rotate", "crop_driving_video", "driving_crop_scale", "driving_crop_vy_ratio", "source_max_dim", "source_division", "face_index", "face_order", "face_hint", "edit", "smoothing", "model_set", "faces", "source_video_smoothing", "source_video_eye_retargeting")
    RELATIVE_MOTION_FIELD_NUMBER: _ClassVar[int]
    DRIVING_OPTION_FIELD_NUMBER: _ClassVar[int]
    DRIVING_MULTIPLIER_FIELD_NUMBER: _ClassVar[int]
    ANIMATION_REGION_FIELD_NUMBER: _ClassVar[int]
    STITCHING_FIELD_NUMBER: _ClassVar[int]
    EYE_RETARGETING_FIELD_NUMBER: _ClassVar[int]
    LIP_RETARGETING_FIELD_NUMBER: _ClassVar[int]
    NORMALIZE_LIP_FIELD_NUMBER: _ClassVar[int]
    PASTE_BACK_FIELD_NUMBER: _ClassVar[int]
    CROP_SOURCE_FIELD_NUMBER: _ClassVar[int]
    CROP_SCALE_FIELD_NUMBER: _ClassVar[int]
    CROP_VY_RATIO_FIELD_NUMBER: _ClassVar[int]
    CROP_ROTATE_FIELD_NUMBER: _ClassVar[int]
    CROP_DRIVING_VIDEO_FIELD_NUMBER: _ClassVar[int]
    DRIVING_CROP_SCALE_FIELD_NUMBER: _ClassVar[int]
    DRIVING_CROP_VY_RATIO_FIELD_NUMBER: _ClassVar[int]
    SOURCE_MAX_DIM_FIELD_NUMBER: _ClassVar[int]
    SOURCE_DIVISION_FIELD_NUMBER: _ClassVar[int]
    FACE_INDEX_FIELD_NUMBER: _ClassVar[int]
    FACE_ORDER_FIELD_NUMBER: _ClassVar[int]
    FACE_HINT_FIELD_NUMBER: _ClassVar[int]
    EDIT_FIELD_NUMBER: _ClassVar[int]
    SMOOTHING_FIELD_NUMBER: _ClassVar[int]
    MODEL_SET_FIELD_NUMBER: _ClassVar[int]
    FACES_FIELD_NUMBER: _ClassVar[int]
    SOURCE_VIDEO_SMOOTHING_FIELD_NUMBER: _ClassVar[int]
    SOURCE_VIDEO_EYE_RETARGETING_FIELD_NUMBER: _ClassVar[int]
    relative_motion: bool
    driving_option: DrivingOption
    driving_multiplier: float
    animation_region: AnimationRegion
    stitching: bool
    eye_retargeting: bool
    lip_retargeting: bool
    normalize_lip: bool
    paste_back: bool
    crop_source: bool
    crop_scale: float
    crop_vy_ratio: float
    crop_rotate: bool
    crop_driving_video: DrivingCrop
    driving_crop_scale: float
    driving_crop_vy_ratio: float
    source_max_dim: int
    source_division: int
    face_index: int
    face_order: str
    face_hint: _containers.RepeatedScalarFieldContainer[float]
    edit: Edit
    smoothing: Smoothing
    model_set: ModelSet
    faces: FaceSelection
    source_video_smoothing: float
    source_video_eye_retargeting: bool
    def __init__(self, relative_motion: _Optional[bool] = ..., driving_option: _Optional[_Union[DrivingOption, str]] = ..., driving_multiplier: _Optional[float] = ..., animation_region: _Optional[_Union[AnimationRegion, str]] = ..., stitching: _Optional[bool] = ..., eye_retargeting: _Optional[bool] = ..., lip_retargeting: _Optional[bool] = ..., normalize_lip: _Optional[bool] = ..., paste_back: _Optional[bool] = ..., crop_source: _Optional[bool] = ..., crop_scale: _Optional[float] = ..., crop_vy_ratio: _Optional[float] = ..., crop_rotate: _Optional[bool] = ..., crop_driving_video: _Optional[_Union[DrivingCrop, str]] = ..., driving_crop_scale: _Optional[float] = ..., driving_crop_vy_ratio: _Optional[float] = ..., source_max_dim: _Optional[int] = ..., source_division: _Optional[int] = ..., face_index: _Optional[int] = ..., face_order: _Optional[str] = ..., face_hint: _Optional[_Iterable[float]] = ..., edit: _Optional[_Union[Edit, _Mapping]] = ..., smoothing: _Optional[_Union[Smoothing, _Mapping]] = ..., model_set: _Optional[_Union[ModelSet, str]] = ..., faces: _Optional[_Union[FaceSelection, _Mapping]] = ..., source_video_smoothing: _Optional[float] = ..., source_video_eye_retargeting: _Optional[bool] = ...) -> None: ...

class Smoothing(_message.Message):
    __slots__ = ("enabled", "min_cutoff_hz", "beta")
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    MIN_CUTOFF_HZ_FIELD_NUMBER: _ClassVar[int]
    BETA_FIELD_NUMBER: _ClassVar[int]
    enabled: bool
    min_cutoff_hz: float
    beta: float
    def __init__(self, enabled: _Optional[bool] = ..., min_cutoff_hz: _Optional[float] = ..., beta: _Optional[float] = ...) -> None: ...

class OutputOptions(_message.Message):
    __slots__ = ("crf", "audio", "low_latency", "fps_and_audio_from_driving", "encoder_speed", "format", "jpeg_quality")
    CRF_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    LOW_LATENCY_FIELD_NUMBER: _ClassVar[int]
    FPS_AND_AUDIO_FROM_DRIVING_FIELD_NUMBER: _ClassVar[int]
    ENCODER_SPEED_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    JPEG_QUALITY_FIELD_NUMBER: _ClassVar[int]
    crf: int
    audio: bool
    low_latency: bool
    fps_and_audio_from_driving: bool
    encoder_speed: EncoderSpeed
    format: OutputFormat
    jpeg_quality: int
    def __init__(self, crf: _Optional[int] = ..., audio: _Optional[bool] = ..., low_latency: _Optional[bool] = ..., fps_and_audio_from_driving: _Optional[bool] = ..., encoder_speed: _Optional[_Union[EncoderSpeed, str]] = ..., format: _Optional[_Union[OutputFormat, str]] = ..., jpeg_quality: _Optional[int] = ...) -> None: ...

class AnimateResponse(_message.Message):
    __slots__ = ("progress", "video", "summary")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    VIDEO_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    progress: Progress
    video: VideoChunk
    summary: Summary
    def __init__(self, progress: _Optional[_Union[Progress, _Mapping]] = ..., video: _Optional[_Union[VideoChunk, _Mapping]] = ..., summary: _Optional[_Union[Summary, _Mapping]] = ...) -> None: ...

class Progress(_message.Message):
    __slots__ = ("stage", "frames_done", "frames_total", "message")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    FRAMES_DONE_FIELD_NUMBER: _ClassVar[int]
    FRAMES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    stage: Stage
    frames_done: int
    frames_total: int
    message: str
    def __init__(self, stage: _Optional[_Union[Stage, str]] = ..., frames_done: _Optional[int] = ..., frames_total: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class VideoChunk(_message.Message):
    __slots__ = ("data", "offset", "mime_type")
    DATA_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    MIME_TYPE_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    offset: int
    mime_type: str
    def __init__(self, data: _Optional[bytes] = ..., offset: _Optional[int] = ..., mime_type: _Optional[str] = ...) -> None: ...

class FrameRate(_message.Message):
    __slots__ = ("num", "den")
    NUM_FIELD_NUMBER: _ClassVar[int]
    DEN_FIELD_NUMBER: _ClassVar[int]
    num: int
    den: int
    def __init__(self, num: _Optional[int] = ..., den: _Optional[int] = ...) -> None: ...

class StageTiming(_message.Message):
    __slots__ = ("stage", "seconds")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    stage: str
    seconds: float
    def __init__(self, stage: _Optional[str] = ..., seconds: _Optional[float] = ...) -> None: ...

class Summary(_message.Message):
    __slots__ = ("frames", "fps", "width", "height", "video_bytes", "has_audio", "timings", "warnings", "weights", "seconds", "triton_bytes_sent", "triton_bytes_received", "source_face_box", "faces", "source_frames")
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    FPS_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    VIDEO_BYTES_FIELD_NUMBER: _ClassVar[int]
    HAS_AUDIO_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    TRITON_BYTES_SENT_FIELD_NUMBER: _ClassVar[int]
    TRITON_BYTES_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FACE_BOX_FIELD_NUMBER: _ClassVar[int]
    FACES_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FRAMES_FIELD_NUMBER: _ClassVar[int]
    frames: int
    fps: FrameRate
    width: int
    height: int
    video_bytes: int
    has_audio: bool
    timings: _containers.RepeatedCompositeFieldContainer[StageTiming]
    warnings: _containers.RepeatedScalarFieldContainer[str]
    weights: str
    seconds: float
    triton_bytes_sent: int
    triton_bytes_received: int
    source_face_box: _containers.RepeatedScalarFieldContainer[float]
    faces: _containers.RepeatedCompositeFieldContainer[AnimatedFace]
    source_frames: int
    def __init__(self, frames: _Optional[int] = ..., fps: _Optional[_Union[FrameRate, _Mapping]] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., video_bytes: _Optional[int] = ..., has_audio: _Optional[bool] = ..., timings: _Optional[_Iterable[_Union[StageTiming, _Mapping]]] = ..., warnings: _Optional[_Iterable[str]] = ..., weights: _Optional[str] = ..., seconds: _Optional[float] = ..., triton_bytes_sent: _Optional[int] = ..., triton_bytes_received: _Optional[int] = ..., source_face_box: _Optional[_Iterable[float]] = ..., faces: _Optional[_Iterable[_Union[AnimatedFace, _Mapping]]] = ..., source_frames: _Optional[int] = ...) -> None: ...

class AnimatedFace(_message.Message):
    __slots__ = ("index", "box", "driving")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    BOX_FIELD_NUMBER: _ClassVar[int]
    DRIVING_FIELD_NUMBER: _ClassVar[int]
    index: int
    box: _containers.RepeatedScalarFieldContainer[float]
    driving: str
    def __init__(self, index: _Optional[int] = ..., box: _Optional[_Iterable[float]] = ..., driving: _Optional[str] = ...) -> None: ...

class MotionFrame(_message.Message):
    __slots__ = ("scale", "rotation", "exp", "t", "eye_ratio", "lip_ratio")
    SCALE_FIELD_NUMBER: _ClassVar[int]
    ROTATION_FIELD_NUMBER: _ClassVar[int]
    EXP_FIELD_NUMBER: _ClassVar[int]
    T_FIELD_NUMBER: _ClassVar[int]
    EYE_RATIO_FIELD_NUMBER: _ClassVar[int]
    LIP_RATIO_FIELD_NUMBER: _ClassVar[int]
    scale: float
    rotation: _containers.RepeatedScalarFieldContainer[float]
    exp: _containers.RepeatedScalarFieldContainer[float]
    t: _containers.RepeatedScalarFieldContainer[float]
    eye_ratio: _containers.RepeatedScalarFieldContainer[float]
    lip_ratio: float
    def __init__(self, scale: _Optional[float] = ..., rotation: _Optional[_Iterable[float]] = ..., exp: _Optional[_Iterable[float]] = ..., t: _Optional[_Iterable[float]] = ..., eye_ratio: _Optional[_Iterable[float]] = ..., lip_ratio: _Optional[float] = ...) -> None: ...

class MotionTemplate(_message.Message):
    __slots__ = ("format_version", "fps", "n_frames", "frames", "origin")
    FORMAT_VERSION_FIELD_NUMBER: _ClassVar[int]
    FPS_FIELD_NUMBER: _ClassVar[int]
    N_FRAMES_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    format_version: int
    fps: FrameRate
    n_frames: int
    frames: _containers.RepeatedCompositeFieldContainer[MotionFrame]
    origin: str
    def __init__(self, format_version: _Optional[int] = ..., fps: _Optional[_Union[FrameRate, _Mapping]] = ..., n_frames: _Optional[int] = ..., frames: _Optional[_Iterable[_Union[MotionFrame, _Mapping]]] = ..., origin: _Optional[str] = ...) -> None: ...

class ExtractMotionRequest(_message.Message):
    __slots__ = ("setup", "driving_chunk")
    SETUP_FIELD_NUMBER: _ClassVar[int]
    DRIVING_CHUNK_FIELD_NUMBER: _ClassVar[int]
    setup: ExtractMotionSetup
    driving_chunk: bytes
    def __init__(self, setup: _Optional[_Union[ExtractMotionSetup, _Mapping]] = ..., driving_chunk: _Optional[bytes] = ...) -> None: ...

class ExtractMotionSetup(_message.Message):
    __slots__ = ("driving_video", "crop_driving_video", "driving_crop_scale", "driving_crop_vy_ratio", "driving_audio", "source_image", "source_options")
    DRIVING_VIDEO_FIELD_NUMBER: _ClassVar[int]
    CROP_DRIVING_VIDEO_FIELD_NUMBER: _ClassVar[int]
    DRIVING_CROP_SCALE_FIELD_NUMBER: _ClassVar[int]
    DRIVING_CROP_VY_RATIO_FIELD_NUMBER: _ClassVar[int]
    DRIVING_AUDIO_FIELD_NUMBER: _ClassVar[int]
    SOURCE_IMAGE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_OPTIONS_FIELD_NUMBER: _ClassVar[int]
    driving_video: DrivingVideo
    crop_driving_video: DrivingCrop
    driving_crop_scale: float
    driving_crop_vy_ratio: float
    driving_audio: DrivingAudio
    source_image: bytes
    source_options: AnimationOptions
    def __init__(self, driving_video: _Optional[_Union[DrivingVideo, _Mapping]] = ..., crop_driving_video: _Optional[_Union[DrivingCrop, str]] = ..., driving_crop_scale: _Optional[float] = ..., driving_crop_vy_ratio: _Optional[float] = ..., driving_audio: _Optional[_Union[DrivingAudio, _Mapping]] = ..., source_image: _Optional[bytes] = ..., source_options: _Optional[_Union[AnimationOptions, _Mapping]] = ...) -> None: ...

class ExtractMotionResponse(_message.Message):
    __slots__ = ("template", "warnings")
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    template: MotionTemplate
    warnings: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, template: _Optional[_Union[MotionTemplate, _Mapping]] = ..., warnings: _Optional[_Iterable[str]] = ...) -> None: ...

class DetectFacesRequest(_message.Message):
    __slots__ = ("image", "ordering", "hint")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    ORDERING_FIELD_NUMBER: _ClassVar[int]
    HINT_FIELD_NUMBER: _ClassVar[int]
    image: bytes
    ordering: str
    hint: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, image: _Optional[bytes] = ..., ordering: _Optional[str] = ..., hint: _Optional[_Iterable[float]] = ...) -> None: ...

class Face(_message.Message):
    __slots__ = ("box", "score", "landmarks", "eye_ratio", "lip_ratio", "crop_matrix")
    BOX_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    LANDMARKS_FIELD_NUMBER: _ClassVar[int]
    EYE_RATIO_FIELD_NUMBER: _ClassVar[int]
    LIP_RATIO_FIELD_NUMBER: _ClassVar[int]
    CROP_MATRIX_FIELD_NUMBER: _ClassVar[int]
    box: _containers.RepeatedScalarFieldContainer[float]
    score: float
    landmarks: _containers.RepeatedScalarFieldContainer[float]
    eye_ratio: _containers.RepeatedScalarFieldContainer[float]
    lip_ratio: float
    crop_matrix: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, box: _Optional[_Iterable[float]] = ..., score: _Optional[float] = ..., landmarks: _Optional[_Iterable[float]] = ..., eye_ratio: _Optional[_Iterable[float]] = ..., lip_ratio: _Optional[float] = ..., crop_matrix: _Optional[_Iterable[float]] = ...) -> None: ...

class DetectFacesResponse(_message.Message):
    __slots__ = ("faces", "width", "height")
    FACES_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    faces: _containers.RepeatedCompositeFieldContainer[Face]
    width: int
    height: int
    def __init__(self, faces: _Optional[_Iterable[_Union[Face, _Mapping]]] = ..., width: _Optional[int] = ..., height: _Optional[int] = ...) -> None: ...

class Edit(_message.Message):
    __slots__ = ("eye_ratio", "lip_ratio", "head_pitch", "head_yaw", "head_roll", "mov_x", "mov_y", "mov_z", "lip_pout", "lip_purse", "lip_grin", "lip_open", "smile", "wink", "eyebrow", "gaze_x", "gaze_y", "rotate_pitch", "rotate_yaw", "rotate_roll", "blink", "alp_eyebrow", "alp_wink", "pupil_x", "pupil_y", "aaa", "eee", "woo", "alp_smile", "src_ratio")
    EYE_RATIO_FIELD_NUMBER: _ClassVar[int]
    LIP_RATIO_FIELD_NUMBER: _ClassVar[int]
    HEAD_PITCH_FIELD_NUMBER: _ClassVar[int]
    HEAD_YAW_FIELD_NUMBER: _ClassVar[int]
    HEAD_ROLL_FIELD_NUMBER: _ClassVar[int]
    MOV_X_FIELD_NUMBER: _ClassVar[int]
    MOV_Y_FIELD_NUMBER: _ClassVar[int]
    MOV_Z_FIELD_NUMBER: _ClassVar[int]
    LIP_POUT_FIELD_NUMBER: _ClassVar[int]
    LIP_PURSE_FIELD_NUMBER: _ClassVar[int]
    LIP_GRIN_FIELD_NUMBER: _ClassVar[int]
    LIP_OPEN_FIELD_NUMBER: _ClassVar[int]
    SMILE_FIELD_NUMBER: _ClassVar[int]
    WINK_FIELD_NUMBER: _ClassVar[int]
    EYEBROW_FIELD_NUMBER: _ClassVar[int]
    GAZE_X_FIELD_NUMBER: _ClassVar[int]
    GAZE_Y_FIELD_NUMBER: _ClassVar[int]
    ROTATE_PITCH_FIELD_NUMBER: _ClassVar[int]
    ROTATE_YAW_FIELD_NUMBER: _ClassVar[int]
    ROTATE_ROLL_FIELD_NUMBER: _ClassVar[int]
    BLINK_FIELD_NUMBER: _ClassVar[int]
    ALP_EYEBROW_FIELD_NUMBER: _ClassVar[int]
    ALP_WINK_FIELD_NUMBER: _ClassVar[int]
    PUPIL_X_FIELD_NUMBER: _ClassVar[int]
    PUPIL_Y_FIELD_NUMBER: _ClassVar[int]
    AAA_FIELD_NUMBER: _ClassVar[int]
    EEE_FIELD_NUMBER: _ClassVar[int]
    WOO_FIELD_NUMBER: _ClassVar[int]
    ALP_SMILE_FIELD_NUMBER: _ClassVar[int]
    SRC_RATIO_FIELD_NUMBER: _ClassVar[int]
    eye_ratio: float
    lip_ratio: float
    head_pitch: float
    head_yaw: float
    head_roll: float
    mov_x: float
    mov_y: float
    mov_z: float
    lip_pout: float
    lip_purse: float
    lip_grin: float
    lip_open: float
    smile: float
    wink: float
    eyebrow: float
    gaze_x: float
    gaze_y: float
    rotate_pitch: float
    rotate_yaw: float
    rotate_roll: float
    blink: float
    alp_eyebrow: float
    alp_wink: float
    pupil_x: float
    pupil_y: float
    aaa: float
    eee: float
    woo: float
    alp_smile: float
    src_ratio: float
    def __init__(self, eye_ratio: _Optional[float] = ..., lip_ratio: _Optional[float] = ..., head_pitch: _Optional[float] = ..., head_yaw: _Optional[float] = ..., head_roll: _Optional[float] = ..., mov_x: _Optional[float] = ..., mov_y: _Optional[float] = ..., mov_z: _Optional[float] = ..., lip_pout: _Optional[float] = ..., lip_purse: _Optional[float] = ..., lip_grin: _Optional[float] = ..., lip_open: _Optional[float] = ..., smile: _Optional[float] = ..., wink: _Optional[float] = ..., eyebrow: _Optional[float] = ..., gaze_x: _Optional[float] = ..., gaze_y: _Optional[float] = ..., rotate_pitch: _Optional[float] = ..., rotate_yaw: _Optional[float] = ..., rotate_roll: _Optional[float] = ..., blink: _Optional[float] = ..., alp_eyebrow: _Optional[float] = ..., alp_wink: _Optional[float] = ..., pupil_x: _Optional[float] = ..., pupil_y: _Optional[float] = ..., aaa: _Optional[float] = ..., eee: _Optional[float] = ..., woo: _Optional[float] = ..., alp_smile: _Optional[float] = ..., src_ratio: _Optional[float] = ...) -> None: ...

class EditSourceOptions(_message.Message):
    __slots__ = ("crop_source", "crop_scale", "crop_vy_ratio", "crop_rotate", "source_max_dim", "source_division", "face_index", "face_order", "face_hint", "stitching", "paste_back")
    CROP_SOURCE_FIELD_NUMBER: _ClassVar[int]
    CROP_SCALE_FIELD_NUMBER: _ClassVar[int]
    CROP_VY_RATIO_FIELD_NUMBER: _ClassVar[int]
    CROP_ROTATE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_MAX_DIM_FIELD_NUMBER: _ClassVar[int]
    SOURCE_DIVISION_FIELD_NUMBER: _ClassVar[int]
    FACE_INDEX_FIELD_NUMBER: _ClassVar[int]
    FACE_ORDER_FIELD_NUMBER: _ClassVar[int]
    FACE_HINT_FIELD_NUMBER: _ClassVar[int]
    STITCHING_FIELD_NUMBER: _ClassVar[int]
    PASTE_BACK_FIELD_NUMBER: _ClassVar[int]
    crop_source: bool
    crop_scale: float
    crop_vy_ratio: float
    crop_rotate: bool
    source_max_dim: int
    source_division: int
    face_index: int
    face_order: str
    face_hint: _containers.RepeatedScalarFieldContainer[float]
    stitching: bool
    paste_back: bool
    def __init__(self, crop_source: _Optional[bool] = ..., crop_scale: _Optional[float] = ..., crop_vy_ratio: _Optional[float] = ..., crop_rotate: _Optional[bool] = ..., source_max_dim: _Optional[int] = ..., source_division: _Optional[int] = ..., face_index: _Optional[int] = ..., face_order: _Optional[str] = ..., face_hint: _Optional[_Iterable[float]] = ..., stitching: _Optional[bool] = ..., paste_back: _Optional[bool] = ...) -> None: ...

class EditRequest(_message.Message):
    __slots__ = ("source_image", "session_id", "source_options", "edit", "format", "jpeg_quality")
    SOURCE_IMAGE_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_OPTIONS_FIELD_NUMBER: _ClassVar[int]
    EDIT_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    JPEG_QUALITY_FIELD_NUMBER: _ClassVar[int]
    source_image: bytes
    session_id: str
    source_options: EditSourceOptions
    edit: Edit
    format: ImageFormat
    jpeg_quality: int
    def __init__(self, source_image: _Optional[bytes] = ..., session_id: _Optional[str] = ..., source_options: _Optional[_Union[EditSourceOptions, _Mapping]] = ..., edit: _Optional[_Union[Edit, _Mapping]] = ..., format: _Optional[_Union[ImageFormat, str]] = ..., jpeg_quality: _Optional[int] = ...) -> None: ...

class EditResponse(_message.Message):
    __slots__ = ("image", "mime_type", "width", "height", "source_face_box", "session_id", "session_reused", "timings", "warnings", "weights", "seconds", "source_eye_ratio", "source_lip_ratio")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    MIME_TYPE_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FACE_BOX_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_REUSED_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_EYE_RATIO_FIELD_NUMBER: _ClassVar[int]
    SOURCE_LIP_RATIO_FIELD_NUMBER: _ClassVar[int]
    image: bytes
    mime_type: str
    width: int
    height: int
    source_face_box: _containers.RepeatedScalarFieldContainer[float]
    session_id: str
    session_reused: bool
    timings: _containers.RepeatedCompositeFieldContainer[StageTiming]
    warnings: _containers.RepeatedScalarFieldContainer[str]
    weights: str
    seconds: float
    source_eye_ratio: _containers.RepeatedScalarFieldContainer[float]
    source_lip_ratio: float
    def __init__(self, image: _Optional[bytes] = ..., mime_type: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., source_face_box: _Optional[_Iterable[float]] = ..., session_id: _Optional[str] = ..., session_reused: _Optional[bool] = ..., timings: _Optional[_Iterable[_Union[StageTiming, _Mapping]]] = ..., warnings: _Optional[_Iterable[str]] = ..., weights: _Optional[str] = ..., seconds: _Optional[float] = ..., source_eye_ratio: _Optional[_Iterable[float]] = ..., source_lip_ratio: _Optional[float] = ...) -> None: ...

class Keyframe(_message.Message):
    __slots__ = ("edit", "duration_s", "easing")
    EDIT_FIELD_NUMBER: _ClassVar[int]
    DURATION_S_FIELD_NUMBER: _ClassVar[int]
    EASING_FIELD_NUMBER: _ClassVar[int]
    edit: Edit
    duration_s: float
    easing: Easing
    def __init__(self, edit: _Optional[_Union[Edit, _Mapping]] = ..., duration_s: _Optional[float] = ..., easing: _Optional[_Union[Easing, str]] = ...) -> None: ...

class Keyframes(_message.Message):
    __slots__ = ("keyframes", "fps")
    KEYFRAMES_FIELD_NUMBER: _ClassVar[int]
    FPS_FIELD_NUMBER: _ClassVar[int]
    keyframes: _containers.RepeatedCompositeFieldContainer[Keyframe]
    fps: FrameRate
    def __init__(self, keyframes: _Optional[_Iterable[_Union[Keyframe, _Mapping]]] = ..., fps: _Optional[_Union[FrameRate, _Mapping]] = ...) -> None: ...

class LiveRequest(_message.Message):
    __slots__ = ("setup", "frame", "reference", "audio")
    SETUP_FIELD_NUMBER: _ClassVar[int]
    FRAME_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    setup: LiveSetup
    frame: DrivingFrame
    reference: DrivingFrame
    audio: LiveAudio
    def __init__(self, setup: _Optional[_Union[LiveSetup, _Mapping]] = ..., frame: _Optional[_Union[DrivingFrame, _Mapping]] = ..., reference: _Optional[_Union[DrivingFrame, _Mapping]] = ..., audio: _Optional[_Union[LiveAudio, _Mapping]] = ...) -> None: ...

class LiveAudio(_message.Message):
    __slots__ = ("pcm", "encoding", "sample_rate")
    PCM_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    pcm: bytes
    encoding: AudioEncoding
    sample_rate: int
    def __init__(self, pcm: _Optional[bytes] = ..., encoding: _Optional[_Union[AudioEncoding, str]] = ..., sample_rate: _Optional[int] = ...) -> None: ...

class LiveVoice(_message.Message):
    __slots__ = ("options", "drop_late_frames")
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    DROP_LATE_FRAMES_FIELD_NUMBER: _ClassVar[int]
    options: AudioOptions
    drop_late_frames: bool
    def __init__(self, options: _Optional[_Union[AudioOptions, _Mapping]] = ..., drop_late_frames: _Optional[bool] = ...) -> None: ...

class LiveSetup(_message.Message):
    __slots__ = ("source_image", "options", "output_format", "jpeg_quality", "fps", "voice")
    SOURCE_IMAGE_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FORMAT_FIELD_NUMBER: _ClassVar[int]
    JPEG_QUALITY_FIELD_NUMBER: _ClassVar[int]
    FPS_FIELD_NUMBER: _ClassVar[int]
    VOICE_FIELD_NUMBER: _ClassVar[int]
    source_image: bytes
    options: AnimationOptions
    output_format: FrameFormat
    jpeg_quality: int
    fps: float
    voice: LiveVoice
    def __init__(self, source_image: _Optional[bytes] = ..., options: _Optional[_Union[AnimationOptions, _Mapping]] = ..., output_format: _Optional[_Union[FrameFormat, str]] = ..., jpeg_quality: _Optional[int] = ..., fps: _Optional[float] = ..., voice: _Optional[_Union[LiveVoice, _Mapping]] = ...) -> None: ...

class DrivingFrame(_message.Message):
    __slots__ = ("data", "format", "width", "height", "capture_time_us", "sequence")
    DATA_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    CAPTURE_TIME_US_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    format: FrameFormat
    width: int
    height: int
    capture_time_us: int
    sequence: int
    def __init__(self, data: _Optional[bytes] = ..., format: _Optional[_Union[FrameFormat, str]] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., capture_time_us: _Optional[int] = ..., sequence: _Optional[int] = ...) -> None: ...

class LiveResponse(_message.Message):
    __slots__ = ("started", "frame", "reference_set")
    STARTED_FIELD_NUMBER: _ClassVar[int]
    FRAME_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_SET_FIELD_NUMBER: _ClassVar[int]
    started: LiveStarted
    frame: LiveFrame
    reference_set: ReferenceSet
    def __init__(self, started: _Optional[_Union[LiveStarted, _Mapping]] = ..., frame: _Optional[_Union[LiveFrame, _Mapping]] = ..., reference_set: _Optional[_Union[ReferenceSet, _Mapping]] = ...) -> None: ...

class LiveStarted(_message.Message):
    __slots__ = ("width", "height", "output_format", "source_face_box", "timings", "weights", "warnings", "max_fps", "max_session_seconds", "idle_timeout_seconds", "audio_lookahead_seconds", "max_audio_ahead_seconds")
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FORMAT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FACE_BOX_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    MAX_FPS_FIELD_NUMBER: _ClassVar[int]
    MAX_SESSION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    IDLE_TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    AUDIO_LOOKAHEAD_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MAX_AUDIO_AHEAD_SECONDS_FIELD_NUMBER: _ClassVar[int]
    width: int
    height: int
    output_format: FrameFormat
    source_face_box: _containers.RepeatedScalarFieldContainer[float]
    timings: _containers.RepeatedCompositeFieldContainer[StageTiming]
    weights: str
    warnings: _containers.RepeatedScalarFieldContainer[str]
    max_fps: float
    max_session_seconds: float
    idle_timeout_seconds: float
    audio_lookahead_seconds: float
    max_audio_ahead_seconds: float
    def __init__(self, width: _Optional[int] = ..., height: _Optional[int] = ..., output_format: _Optional[_Union[FrameFormat, str]] = ..., source_face_box: _Optional[_Iterable[float]] = ..., timings: _Optional[_Iterable[_Union[StageTiming, _Mapping]]] = ..., weights: _Optional[str] = ..., warnings: _Optional[_Iterable[str]] = ..., max_fps: _Optional[float] = ..., max_session_seconds: _Optional[float] = ..., idle_timeout_seconds: _Optional[float] = ..., audio_lookahead_seconds: _Optional[float] = ..., max_audio_ahead_seconds: _Optional[float] = ...) -> None: ...

class LiveFrame(_message.Message):
    __slots__ = ("sequence", "capture_time_us", "image", "format", "width", "height", "face_found", "timings", "server_seconds", "frames_received", "frames_dropped", "audio_seconds_received")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    CAPTURE_TIME_US_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    FACE_FOUND_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    SERVER_SECONDS_FIELD_NUMBER: _ClassVar[int]
    FRAMES_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    FRAMES_DROPPED_FIELD_NUMBER: _ClassVar[int]
    AUDIO_SECONDS_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    capture_time_us: int
    image: bytes
    format: FrameFormat
    width: int
    height: int
    face_found: bool
    timings: _containers.RepeatedCompositeFieldContainer[StageTiming]
    server_seconds: float
    frames_received: int
    frames_dropped: int
    audio_seconds_received: float
    def __init__(self, sequence: _Optional[int] = ..., capture_time_us: _Optional[int] = ..., image: _Optional[bytes] = ..., format: _Optional[_Union[FrameFormat, str]] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., face_found: _Optional[bool] = ..., timings: _Optional[_Iterable[_Union[StageTiming, _Mapping]]] = ..., server_seconds: _Optional[float] = ..., frames_received: _Optional[int] = ..., frames_dropped: _Optional[int] = ..., audio_seconds_received: _Optional[float] = ...) -> None: ...

class ReferenceSet(_message.Message):
    __slots__ = ("sequence", "capture_time_us", "face_found")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    CAPTURE_TIME_US_FIELD_NUMBER: _ClassVar[int]
    FACE_FOUND_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    capture_time_us: int
    face_found: bool
    def __init__(self, sequence: _Optional[int] = ..., capture_time_us: _Optional[int] = ..., face_found: _Optional[bool] = ...) -> None: ...
