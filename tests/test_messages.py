"""Messages in the project's words, bounded whatever the request holds (issue 17, items 5, 8 and 9): request values
quoted at a bounded length, arrays summarised, one image-size limit, no library text; templates checked alike by the
client and the server, with bounds on absurd values; an output path that cannot be written fails before any call."""
from __future__ import annotations

import io
import pickle
import re
import struct
import zlib
from fractions import Fraction
from pathlib import Path

import grpc
import numpy as np
import pytest
from PIL import Image

from client.cli import main as cli
from client.demo_motion import demo_template, rotation
from client.templates import TemplateError, convert, read_template
from orchestrator.face import InvalidImageError, decode_image
from orchestrator.media import InvalidVideoError, probe
from orchestrator.quoting import bad_values, bounded, quote
from orchestrator.templates import InvalidTemplateError, from_proto
from protos.liveportrait.v1 import portrait_animator_pb2 as pb

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = REPO_ROOT.parent / "shared" / "examples"
SOURCE = EXAMPLES / "source" / "s0.jpg"


# ---- bounded echoes ---------------------------------------------------------------------------------------------

def test_a_quoted_request_value_is_cut_and_its_length_said():
    assert quote("large-small") == "'large-small'"
    long = quote("x" * 65536)
    assert long == repr("x" * 80) + "... (65536 characters)"
    assert bad_values(np.array([[True, False], [True, True]])) == "3 of 4 values, first at index 0"
    assert bounded("y" * 5000) == "y" * 1000 + "... (5000 characters)" and bounded("short") == "short"


def test_a_template_full_of_nan_is_refused_in_one_short_line():
    message = demo_template(frames=4)
    message.frames[2].exp[:] = [float("nan")] * 63
    with pytest.raises(InvalidTemplateError) as error:
        from_proto(message)
    text = str(error.value)
    assert text == "frame 2: exp holds a non-finite value (63 of 63 values, first at index 0); 1 frame(s) affected"
    assert "nan" not in text


@pytest.fixture(scope="module")
def bare_server(tmp_path_factory):
    """An orchestrator without Triton: the calls here are refused before any model is needed."""
    from orchestrator.embedded import OrchestratorProcess

    with OrchestratorProcess("127.0.0.1:1", tmp_path_factory.mktemp("bare") / "orchestrator.log",
                             require_serving=False) as process:
        with grpc.insecure_channel(process.target) as channel:
            from protos.liveportrait.v1 import portrait_animator_pb2_grpc as pb_grpc

            yield pb_grpc.PortraitAnimatorStub(channel)


def refused(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as error:
        call()
    return error.value


def test_huge_request_strings_are_invalid_argument_with_a_bounded_message(bare_server):
    """Echoed whole, a 64 KB session_id or a 20 KB face_order made the status message pass gRPC's 16 KB header limit:
    the client got RESOURCE_EXHAUSTED "received metadata size exceeds hard limit" instead of INVALID_ARGUMENT."""
    session = refused(lambda: bare_server.EditPortrait(pb.EditRequest(session_id="s" * 65536), timeout=30))
    order = pb.AnimateSetup(source_image=SOURCE.read_bytes(), driving_template=demo_template(frames=2),
                            options=pb.AnimationOptions(face_order="o" * 20_000))
    face_order = refused(lambda: list(bare_server.AnimatePortrait(iter([pb.AnimateRequest(setup=order)]),
                                                                  timeout=30)))
    ordering = refused(lambda: bare_server.DetectFaces(pb.DetectFacesRequest(image=b"x", ordering="r" * 20_000),
                                                       timeout=30))
    nan = demo_template(frames=3)
    nan.frames[1].exp[:] = [float("nan")] * 63
    template = refused(lambda: list(bare_server.AnimatePortrait(iter([pb.AnimateRequest(
        setup=pb.AnimateSetup(source_image=SOURCE.read_bytes(), driving_template=nan))]), timeout=30)))
    for error, says in ((session, "unknown or expired session_id 'sss"), (face_order, "unknown face_order 'ooo"),
                        (ordering, "unknown ordering 'rrr"), (template, "frame 1: exp holds a non-finite value")):
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
        assert error.details().startswith(says) and len(error.details()) < 300, error.details()
    assert "(65536 characters)" in session.details() and "(20000 characters)" in face_order.details()


# ---- one image-size limit, no library text -----------------------------------------------------------------------

def png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` (its pixel data is absent): what a decompression bomb looks like
    before it is decoded."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("side", [7_500, 10_000, 14_000])  # past the project's limit; Pillow's warning; its error
def test_one_image_size_limit_in_the_projects_words(side):
    with pytest.raises(InvalidImageError) as error:
        decode_image(png_header(side, side))
    assert str(error.value) == (f"the image is too large: {side}x{side} pixels, more than the limit of "
                                "50,000,000 pixels")


def test_a_truncated_image_is_reported_without_library_text():
    buffer = io.BytesIO()
    Image.open(SOURCE).save(buffer, "JPEG")
    with pytest.raises(InvalidImageError) as error:
        decode_image(buffer.getvalue()[:-4000])
    assert str(error.value) == "the image file is truncated or corrupt (its data ends early or cannot be decoded)"


def test_random_bytes_are_not_a_video(tmp_path):
    """The spool file's .bin suffix made FFmpeg read random bytes as a "BinText" text-art video, which then failed as
    a "corrupt or unsupported bintext stream"."""
    upload = tmp_path / "upload-abc.bin"
    upload.write_bytes(np.random.default_rng(0).integers(0, 256, 200_000, dtype=np.uint8).tobytes())
    with pytest.raises(InvalidVideoError) as error:
        probe(upload)
    assert str(error.value) == ("the driving video cannot be read: it is not a video file in a supported format, or "
                                "it is truncated or corrupt")


def test_the_live_cli_says_a_driving_file_is_not_a_video(tmp_path, capsys):
    fake = tmp_path / "clip.mp4"
    fake.write_bytes(np.random.default_rng(1).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    assert cli(["live", "--server", "127.0.0.1:1", "--source", str(SOURCE), "--driving", str(fake)]) == 1
    err = capsys.readouterr().err
    assert err.strip() == (f"error: the driving video {str(fake)!r} is not a video in a supported format, or it is "
                           "truncated or corrupt")


def test_an_unwritable_output_fails_before_any_call(tmp_path, capsys):
    """`animate -o /proc/x.mp4` rendered the whole request before failing on the output path. Here no server
    listens: a call would end UNAVAILABLE, so the output's error shows that none was made."""
    code = cli(["animate", "--server", "127.0.0.1:1", "--source", str(SOURCE), "--driving",
                str(EXAMPLES / "templates" / "wink.pkl"), "-o", "/proc/x.mp4", "--timeout", "5"])
    err = capsys.readouterr().err
    assert code == 1 and err.strip() == "error: the output '/proc/x.mp4' cannot be written: No such file or directory"


# ---- templates: what the server refuses, the client refuses first ------------------------------------------------

def frames_with(change) -> pb.MotionTemplate:
    message = demo_template(frames=3, fps=Fraction(25))
    change(message.frames[1])
    return message


def set_rotation(frame, matrix) -> None:
    frame.rotation[:] = np.asarray(matrix, float).reshape(-1).tolist()


@pytest.mark.parametrize("change, says", [
    (lambda f: f.exp.__setitem__(5, 1e30), "frame 1: exp is out of range [-1, 1] (1 of 63 values, first at index 5)"),
    (lambda f: setattr(f, "scale", -1.0), "frame 1: scale is out of range [0.1, 10]"),
    (lambda f: setattr(f, "scale", 1e6), "frame 1: scale is out of range [0.1, 10]"),
    (lambda f: f.t.__setitem__(2, -50.0), "frame 1: t is out of range [-5, 5]"),
    (lambda f: setattr(f, "lip_ratio", 7.0), "frame 1: lip_ratio is out of range [0, 2]"),
    (lambda f: set_rotation(f, np.zeros((3, 3))), "frame 1: rotation is not a rotation matrix"),
    (lambda f: set_rotation(f, 2 * np.eye(3)), "frame 1: rotation is not a rotation matrix"),
    (lambda f: set_rotation(f, np.diag([-1.0, 1.0, 1.0])), "frame 1: rotation is not a rotation matrix"),
], ids=["exp 1e30", "scale -1", "scale 1e6", "t -50", "lip ratio 7", "all-zero rotation", "scaled rotation",
        "mirror"])
def test_absurd_templates_are_refused(change, says):
    with pytest.raises(InvalidTemplateError, match="^" + re.escape(says)):
        from_proto(frames_with(change))


def test_real_motion_is_within_the_bounds():
    for path in sorted((EXAMPLES / "templates").glob("*.pkl")):  # the official templates
        assert len(from_proto(read_template(path)).motion) > 0
    for pitch, yaw, roll in ((30, -45, 20), (-60, 80, -45)):  # large head turns are rotations like any other
        frame = lambda f: set_rotation(f, rotation(pitch, yaw, roll))  # noqa: E731
        assert len(from_proto(frames_with(frame)).motion) == 3


def official(**changes) -> dict:
    motion = [{"scale": np.full((1, 1), 1.5, np.float32), "R": np.eye(3, dtype=np.float32)[None],
               "exp": np.zeros((1, 21, 3), np.float32), "t": np.zeros((1, 3), np.float32)} for _ in range(80)]
    data = {"n_frames": 80, "output_fps": 25, "motion": motion}
    for key, value in changes.items():
        if key == "scale":
            motion[3]["scale"] = np.full((1, 1), value, np.float32)
        else:
            data[key] = value
    return data


@pytest.mark.parametrize("changes, says", [
    ({"output_fps": 0}, "output_fps must be a number of frames per second > 0, got '0'"),
    ({"output_fps": 1e-9}, "invalid frame rate 0/1"),
    ({"output_fps": float("nan")}, "output_fps must be a number of frames per second > 0, got 'nan'"),
    ({"output_fps": "fast"}, "output_fps must be a number of frames per second > 0, got 'fast'"),
    ({"output_fps": 5000}, "frame rate 5000 is out of range"),
    ({"scale": -1.0}, "frame 3: scale is out of range [0.1, 10]"),
], ids=["fps 0", "fps 1e-9", "fps nan", "fps text", "fps 5000", "scale -1"])
def test_convert_template_never_writes_what_the_server_refuses(tmp_path, capsys, changes, says):
    source, destination = tmp_path / "t.pkl", tmp_path / "t.pb"
    source.write_bytes(pickle.dumps(official(**changes)))
    with pytest.raises(TemplateError, match="^" + re.escape(says)):
        convert(source, destination)
    assert cli(["convert-template", str(source), str(destination)]) == 1
    assert capsys.readouterr().err.startswith(f"error: {says}")
    assert not destination.exists()
    source.write_bytes(pickle.dumps(official()))
    assert cli(["convert-template", str(source), str(destination)]) == 0 and destination.exists()


def test_a_written_template_the_server_would_refuse_is_refused_when_read(tmp_path):
    refused_by_server = frames_with(lambda f: setattr(f, "scale", -1.0))
    path = tmp_path / "bad.pb"
    path.write_bytes(refused_by_server.SerializeToString())
    with pytest.raises(TemplateError, match="frame 1: scale is out of range"):
        read_template(path)
