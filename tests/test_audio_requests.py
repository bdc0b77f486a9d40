"""AnimatePortrait driven by a voice, the bad inputs: every one is INVALID_ARGUMENT in words before any model runs,
the server keeps serving, and no spooled upload is left behind. (The orchestrator runs for real; Triton is not
needed for these refusals, so none is started.) The client builds the request from a sound file."""
from __future__ import annotations

import socket
from fractions import Fraction
from pathlib import Path

import grpc
import pytest

from audio_files import chirp, repeated_mp3, write_audio
from client.api import PortraitClient
from client.messages import InputError, animate_setup, audio_options
from orchestrator.embedded import OrchestratorProcess
from protos.liveportrait.v1 import portrait_animator_pb2 as pb
from test_media import make_video

EXAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "examples"
BUILD = Path(__file__).resolve().parents[1] / "build" / "test"
SOURCE = EXAMPLES / "source" / "s0.jpg"
MAX_AUDIO_SECONDS = 5
MAX_FRAMES = 80  # 3.2 s at 25 fps


@pytest.fixture(scope="module")
def spool(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("spool")


@pytest.fixture(scope="module")
def client(spool):
    reserved = socket.socket()  # a port bound but never listening: no Triton (these requests never reach it)
    reserved.bind(("127.0.0.1", 0))
    dead = f"127.0.0.1:{reserved.getsockname()[1]}"
    args = ("--max-audio-seconds", str(MAX_AUDIO_SECONDS), "--max-frames", str(MAX_FRAMES), "--spool-dir", str(spool))
    with reserved, OrchestratorProcess(dead, BUILD / "orchestrator-audio.log", extra_args=args,
                                       require_serving=False) as process:
        with PortraitClient(process.target) as c:
            yield c


def refused(client: PortraitClient, driving: Path, tmp_path: Path, **options) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as error:
        client.animate(SOURCE, driving, tmp_path / "out.mp4", timeout=60, **options)
    return error.value


def spooled(spool: Path) -> list[Path]:
    return [p for p in spool.rglob("upload-*")]  # the process folder keeps only its owner.json


@pytest.mark.parametrize("name,data", [("noise.wav", bytes(range(256)) * 256), ("empty-header.mp3", b"ID3" * 10)])
def test_corrupt_audio_is_invalid_argument_in_words(client, spool, tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    error = refused(client, path, tmp_path)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("the driving audio cannot be read")
    assert "upload-" not in error.details() and str(spool) not in error.details()
    assert spooled(spool) == []


def test_a_video_without_sound_as_audio_is_refused(client, spool, tmp_path):
    video = make_video(tmp_path / "silent.mp4", 10, Fraction(25))
    path = tmp_path / "silent.m4a"  # a suffix that makes the client send it as driving audio
    path.write_bytes(video.read_bytes())
    error = refused(client, path, tmp_path)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "the driving audio has no audio stream" in error.details() and "driving_video" in error.details()
    assert spooled(spool) == []


def test_a_voice_sent_as_a_driving_video_is_refused_with_a_hint(client, spool, tmp_path):
    voice = write_audio(tmp_path / "speech.wav", chirp(1.0, 16000), 16000)
    path = tmp_path / "speech.mp4"  # a suffix that makes the client send it as a driving video
    path.write_bytes(voice.read_bytes())
    error = refused(client, path, tmp_path)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "no video stream" in error.details() and "driving_audio" in error.details()


def test_audio_over_the_length_limit_is_refused_naming_it(client, spool, tmp_path):
    long = repeated_mp3(tmp_path / "two-hours.mp3", 7200)
    error = refused(client, long, tmp_path)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"longer than the limit of {MAX_AUDIO_SECONDS} seconds" in error.details()
    assert spooled(spool) == []


def test_audio_longer_than_the_frame_limit_is_refused_naming_it(client, spool, tmp_path):
    voice = write_audio(tmp_path / "speech.wav", chirp(4.0, 16000), 16000)  # under the 5 s, over the 80 frames
    error = refused(client, voice, tmp_path)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "makes 100 frames at 25 fps, more than the limit of 80" in error.details()
    assert spooled(spool) == []


@pytest.mark.parametrize("options,message", [
    ({"sampling_steps": 0}, "sampling_steps must be between 1 and 200"),
    ({"eye_ball": [0.1, 0.2]}, "eye_ball takes 6 values"),
    ({"guidance": float("nan")}, "guidance must be between 0 and 10"),
    ({"head_motion": 1.5}, "head_motion must be between 0 and 1"),
])
def test_audio_options_out_of_range_are_named(client, tmp_path, options, message):
    voice = write_audio(tmp_path / "speech.wav", chirp(1.0, 16000), 16000)
    error = refused(client, voice, tmp_path, audio_options=options)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and message in error.details()


@pytest.mark.parametrize("change,message", [
    ("source_video", "driving_audio cannot be combined with a source video"),
    ("animal", "driving_audio cannot be combined with model_set ANIMAL"),
    ("faces", "driving_audio cannot be combined with several faces"),
    ("lip_retargeting", "driving_audio cannot be combined with eye_retargeting or lip_retargeting"),
])
def test_combinations_audio_cannot_drive_are_refused(client, tmp_path, change, message):
    voice = write_audio(tmp_path / "speech.wav", chirp(1.0, 16000), 16000)
    setup, _ = animate_setup(SOURCE, voice)
    if change == "source_video":
        setup.source_video.CopyFrom(pb.SourceVideo(size_bytes=10))
    elif change == "animal":
        setup.options.model_set = pb.ANIMAL
        setup.options.crop_source = False  # animal mode's own precondition met
    elif change == "faces":
        setup.options.faces.all = True
    else:
        setup.options.lip_retargeting = True
    requests = [pb.AnimateRequest(setup=setup), pb.AnimateRequest(driving_chunk=voice.read_bytes())]
    with pytest.raises(grpc.RpcError) as error:
        list(client.stub.AnimatePortrait(iter(requests), timeout=60))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and message in error.value.details()


def test_an_incomplete_upload_is_refused_and_removed(client, spool, tmp_path):
    voice = write_audio(tmp_path / "speech.flac", chirp(2.0, 16000), 16000)
    setup, _ = animate_setup(SOURCE, voice)
    data = voice.read_bytes()
    requests = [pb.AnimateRequest(setup=setup), pb.AnimateRequest(driving_chunk=data[:len(data) // 2])]
    with pytest.raises(grpc.RpcError) as error:
        list(client.stub.AnimatePortrait(iter(requests), timeout=60))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "the driving audio was announced as" in error.value.details()
    assert spooled(spool) == []


def test_the_client_sends_a_sound_file_as_driving_audio_with_its_options(tmp_path):
    voice = write_audio(tmp_path / "speech.opus", chirp(1.0, 16000), 16000)
    setup, follows = animate_setup(SOURCE, voice, audio_options=audio_options(emotion="happy", seed=7,
                                                                                eye_blinks=False))
    assert setup.WhichOneof("driving") == "driving_audio" and follows == voice
    assert setup.driving_audio.size_bytes == voice.stat().st_size and setup.driving_audio.filename == "speech.opus"
    sent = setup.driving_audio.options
    assert (sent.emotion, sent.seed, sent.eye_blinks) == (pb.EMOTION_HAPPY, 7, False)
    assert not sent.HasField("guidance")  # unset: the server's default
    with pytest.raises(ValueError, match="unknown emotion 'glad'"):
        audio_options(emotion="glad")
    with pytest.raises(InputError, match="audio options apply to a driving voice"):
        animate_setup(SOURCE, EXAMPLES / "driving" / "d0.mp4", audio_options=audio_options(seed=1))


def test_live_voice_options_out_of_range_are_named_as_the_voice_setups():
    from orchestrator.errors import InvalidRequest
    from orchestrator.live.voice import voice_options
    from orchestrator.options import AnimateOptions

    setup = pb.LiveSetup(voice=pb.LiveVoice(options=pb.AudioOptions(guidance=11.0)))
    with pytest.raises(InvalidRequest, match=r"^voice\.options\.guidance must be between 0 and 10"):
        voice_options(setup, AnimateOptions())
