"""Property-based fuzzing (hypothesis) of what hostile input reaches first: the image decoder, the video demuxer
front-end, the template readers (the restricted unpickler, .pb/.json, the server's template check) and the request
option parser. Each either returns a well-formed result or raises its one documented error type, which the service
turns into INVALID_ARGUMENT; nothing else may escape (that would be an INTERNAL error for the caller).

Bounded: a fixed number of examples per target and a derandomised search, so CI time is stable (~1 min in all). A
failure found here becomes a regression test beside the code it broke (hypothesis prints the minimal example)."""
from __future__ import annotations

import io
import math
import pickle
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from client.templates import TemplateError, read_template
from orchestrator.errors import InvalidRequest
from orchestrator.face import InvalidImageError, decode_image
from orchestrator.media import InvalidVideoError, probe, read_frames
from orchestrator.options import animate_options
from orchestrator.templates import InvalidTemplateError, from_proto
from protos.liveportrait.v1 import portrait_animator_pb2 as pb

SHARED = Path(__file__).resolve().parents[2] / "shared"
FUZZ = settings(max_examples=400, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _encoded(fmt: str, mode: str = "RGB") -> bytes:
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 40, 3), dtype=np.uint8)).convert(mode)
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


SEED_IMAGES = [_encoded("PNG"), _encoded("JPEG"), _encoded("PNG", "RGBA"), _encoded("WEBP"), _encoded("BMP"),
               _encoded("TIFF"), _encoded("PNG", "I;16"), _encoded("GIF", "P")]


@st.composite
def mutated(draw, seeds: list[bytes]) -> bytes:
    """A valid file with a few bytes flipped, a piece cut out, or truncated; or random bytes."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=512))
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 8))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        start = draw(st.integers(0, len(data) - 1))
        del data[start:start + draw(st.integers(1, 64))]
    if draw(st.booleans()):
        data = data[:draw(st.integers(0, len(data)))]
    return bytes(data)


@FUZZ
@given(mutated(SEED_IMAGES))
def test_image_decoder_returns_rgb_or_says_why(data):
    try:
        image = decode_image(data)
    except InvalidImageError as exc:
        assert str(exc)
        return
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3


def _seed_video() -> bytes:
    import av

    out = io.BytesIO()
    with av.open(out, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width = stream.height = 64
        stream.pix_fmt = "yuv420p"
        for i in range(6):
            frame = av.VideoFrame.from_ndarray(np.full((64, 64, 3), i * 40, np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return out.getvalue()


SEED_VIDEOS = [_seed_video()]


@settings(FUZZ, max_examples=200)
@given(mutated(SEED_VIDEOS))
def test_video_front_end_reads_frames_or_says_why(data):
    with tempfile.NamedTemporaryFile(suffix=".bin") as spool:
        spool.write(data)
        spool.flush()
        try:
            info = probe(Path(spool.name))
            frames = [f for chunk in read_frames(Path(spool.name), 4, 100) for f in chunk]
        except InvalidVideoError as exc:
            assert str(exc) and spool.name not in str(exc)  # never a server path in a client-facing message
            return
    assert info.width > 0 and info.height > 0 and frames
    assert all(f.dtype == np.uint8 and f.ndim == 3 for f in frames)


def test_regression_a_video_track_without_a_decoder_is_refused(tmp_path):
    """Found by the fuzzer: an MP4 whose sample description names no known codec has no codec context; probing it
    raised AttributeError (an INTERNAL error for the caller)."""
    data = _seed_video()
    codec_tag = data.rfind(b"avc1")
    path = tmp_path / "unknown-codec.mp4"
    path.write_bytes(data[:codec_tag] + b"zzzz" + data[codec_tag + 4:])
    with pytest.raises(InvalidVideoError, match="no decoder"):
        probe(path)


def _seed_templates() -> dict[str, bytes]:
    motion = [{"scale": np.array([[1.5]], np.float32), "R": np.eye(3, dtype=np.float32)[None],
               "exp": np.zeros((1, 21, 3), np.float32), "t": np.zeros((1, 3), np.float32)} for _ in range(3)]
    official = pickle.dumps({"n_frames": 3, "output_fps": 25, "motion": motion,
                             "c_eyes_lst": [np.array([[0.3, 0.3]])] * 3, "c_lip_lst": [np.array([[0.1]])] * 3})
    frames = [pb.MotionFrame(scale=1.5, rotation=list(np.eye(3).ravel()), exp=[0.0] * 63, t=[0.0] * 3)
              for _ in range(3)]
    message = pb.MotionTemplate(format_version=1, n_frames=3, frames=frames)
    from google.protobuf import json_format

    return {".pkl": official, ".pb": message.SerializeToString(),
            ".json": json_format.MessageToJson(message).encode()}


SEED_TEMPLATES = _seed_templates()


@FUZZ
@given(st.sampled_from(sorted(SEED_TEMPLATES)), st.data())
def test_template_files_are_read_or_refused_with_a_reason(suffix, data):
    content = data.draw(mutated([SEED_TEMPLATES[suffix]]))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"template{suffix}"
        path.write_bytes(content)
        try:
            message = read_template(path)
        except TemplateError as exc:
            assert str(exc)
            return
    assert isinstance(message, pb.MotionTemplate)


finite = st.floats(allow_nan=True, allow_infinity=True, width=32)


@st.composite
def template_messages(draw) -> pb.MotionTemplate:
    n = draw(st.integers(0, 4))
    frames = []
    for _ in range(n):
        frame = pb.MotionFrame(
            scale=draw(finite), rotation=draw(st.lists(finite, min_size=8, max_size=10)),
            exp=draw(st.lists(finite, min_size=62, max_size=64)), t=draw(st.lists(finite, min_size=2, max_size=4)),
            eye_ratio=draw(st.lists(finite, max_size=3)))
        if draw(st.booleans()):
            frame.lip_ratio = draw(finite)
        frames.append(frame)
    return pb.MotionTemplate(format_version=draw(st.integers(0, 3)), n_frames=draw(st.integers(0, 5)),
                             frames=frames, fps=pb.FrameRate(num=draw(st.integers(0, 10**6)),
                                                            den=draw(st.integers(0, 10**6))))


@FUZZ
@given(template_messages())
def test_server_template_check_accepts_only_finite_well_shaped_motion(message):
    try:
        template = from_proto(message)
    except InvalidTemplateError as exc:
        assert str(exc)
        return
    motion = template.motion
    for values in (motion.scale, motion.R, motion.exp, motion.t, motion.eye_ratio, motion.lip_ratio):
        assert values is None or np.isfinite(values).all()
    assert len(motion) == message.n_frames and template.fps > 0


def _fields_of(message_type) -> list:
    return [f for f in message_type.DESCRIPTOR.fields if f.label != f.LABEL_REPEATED and f.message_type is None]


@st.composite
def animation_options(draw) -> pb.AnimationOptions:
    options = pb.AnimationOptions()
    for field in _fields_of(pb.AnimationOptions):
        if not draw(st.booleans()):
            continue
        if field.type == field.TYPE_FLOAT:
            setattr(options, field.name, draw(finite))
        elif field.type == field.TYPE_BOOL:
            setattr(options, field.name, draw(st.booleans()))
        elif field.type == field.TYPE_UINT32:
            setattr(options, field.name, draw(st.integers(0, 2**32 - 1)))
        elif field.type == field.TYPE_ENUM:
            setattr(options, field.name, draw(st.integers(-3, 12)))
        elif field.type == field.TYPE_STRING:
            setattr(options, field.name, draw(st.text(max_size=20)))
    if draw(st.booleans()):
        options.face_hint.extend(draw(st.lists(finite, max_size=6)))
    return options


@FUZZ
@given(animation_options(), st.integers(0, 2**32 - 1))
def test_option_parser_accepts_or_names_the_bad_option(options, crf):
    output = pb.OutputOptions(crf=crf)
    try:
        parsed = animate_options(options, output)
    except InvalidRequest as exc:
        assert str(exc)
        return
    assert 1.0 <= parsed.source_crop.scale <= 4.0 and math.isfinite(parsed.keypoints.driving_multiplier)
    assert 64 <= parsed.source_max_dim <= 4096 and 0 <= parsed.crf <= 51


@pytest.mark.skipif(not (SHARED / "examples" / "templates" / "d7.pkl").is_file(), reason="needs ../shared")
def test_the_official_template_still_reads():
    assert len(read_template(SHARED / "examples" / "templates" / "d7.pkl").frames) > 0
