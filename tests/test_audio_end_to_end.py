"""End to end through the service: a portrait and a voice (a sound file, streamed like a driving video) -> an MP4 at
25 fps with ceil(seconds x 25) frames and the voice muxed as AAC; the same seed gives the same bytes; the spooled
upload is removed. Served on the tiny stack with the audio models (one Triton start for the module)."""
from __future__ import annotations

import math
from pathlib import Path

import av
import grpc
import numpy as np
import pytest

from audio_files import chirp, write_audio
from client.api import PortraitClient
from client.messages import InputError, audio_options, extract_requests
from orchestrator.embedded import OrchestratorProcess
from orchestrator.keypoints import EYE_KEYPOINTS, Motion
from orchestrator.pipeline.audio_animation import with_source_eyes
from protos.liveportrait.v1 import portrait_animator_pb2 as pb

EXAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "examples"
BUILD = Path(__file__).resolve().parents[1] / "build" / "test"
SOURCE = EXAMPLES / "source" / "s0.jpg"
SECONDS = 1.3


@pytest.fixture(scope="module")
def spool(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("spool")


@pytest.fixture(scope="module")
def client(spool, audio_triton_server):
    """The tiny CPU repository with the audio models (``liveportrait-export --audio``; the shared Triton) and the
    orchestrator."""
    with OrchestratorProcess(audio_triton_server.grpc_url, BUILD / "orchestrator-audio-e2e.log",
                             extra_args=("--spool-dir", str(spool))) as process, \
            PortraitClient(process.target) as c:
        yield c


@pytest.fixture(scope="module")
def voice(tmp_path_factory) -> Path:
    """1.3 s of a chirp, stereo at 44.1 kHz (resampled to 16 kHz mono by the server)."""
    return write_audio(tmp_path_factory.mktemp("voice") / "speech.wav", chirp(SECONDS, 44100), 44100, "stereo")


def read_mp4(path: Path) -> tuple[int, float, str, float]:
    """(video frames, fps, audio codec, audio seconds) as a player sees them."""
    with av.open(str(path)) as c:
        video = c.streams.video[0]
        fps = float(video.average_rate)
        frames = sum(1 for _ in c.decode(video))
    with av.open(str(path)) as c:
        audio = c.streams.audio[0]
        seconds = sum(f.samples for f in c.decode(audio)) / audio.codec_context.sample_rate
        return frames, fps, audio.codec_context.name, seconds


@pytest.mark.triton
def test_a_voice_animates_the_portrait_for_its_length_with_the_audio_muxed(client, voice, spool, tmp_path):
    out = tmp_path / "talking.mp4"
    summary = client.animate(SOURCE, voice, out, timeout=600, audio_options=audio_options(seed=5, sampling_steps=4))
    expected = math.ceil(SECONDS * 25)  # 33
    assert summary.frames == expected and (summary.fps.num, summary.fps.den) == (25, 1) and summary.has_audio
    frames, fps, codec, seconds = read_mp4(out)
    assert (frames, fps, codec) == (expected, 25.0, "aac")
    # all of the voice, ending with the video (plus at most the AAC encoder's priming frame and one last frame)
    assert SECONDS <= seconds <= expected / 25 + 2 * 1024 / 44100
    assert list(spool.rglob("upload-*")) == []  # the spooled upload is gone once the call ends


@pytest.mark.triton
def test_the_same_seed_gives_the_same_video_and_another_seed_another(client, voice, tmp_path):
    videos = []
    for name, seed in (("a", 11), ("b", 11), ("c", 12)):
        client.animate(SOURCE, voice, tmp_path / f"{name}.mp4", timeout=600,
                       audio_options=audio_options(seed=seed, sampling_steps=4, emotion="happy"))
        videos.append((tmp_path / f"{name}.mp4").read_bytes())
    assert videos[0] == videos[1]
    assert videos[0] != videos[2]


@pytest.mark.triton
def test_without_audio_the_video_keeps_the_voice_length_and_no_sound(client, voice, tmp_path):
    out = tmp_path / "silent.mp4"
    summary = client.animate(SOURCE, voice, out, timeout=600, audio=False,
                             audio_options=audio_options(sampling_steps=2, eye_blinks=False, head_motion=0.0))
    assert summary.frames == math.ceil(SECONDS * 25) and not summary.has_audio
    with av.open(str(out)) as c:
        assert not c.streams.audio and sum(1 for _ in c.decode(video=0)) == summary.frames


@pytest.mark.triton
def test_silence_renders_a_portrait_for_its_length(client, tmp_path):
    silence = write_audio(tmp_path / "silence.flac", np.zeros(8000, np.float32), 16000)  # 0.5 s
    summary = client.animate(SOURCE, silence, tmp_path / "still.mp4", timeout=600,
                             audio_options=audio_options(sampling_steps=2))
    assert summary.frames == 13 and summary.has_audio  # ceil(0.5 x 25)


@pytest.mark.triton
def test_a_server_without_the_audio_models_names_the_export_flag(triton_server, voice, tmp_path):
    """The shared tiny repository is exported without ``--audio``: a voice is FAILED_PRECONDITION in words."""
    with OrchestratorProcess(triton_server.grpc_url, BUILD / "orchestrator-no-audio.log") as process, \
            PortraitClient(process.target) as c:
        with pytest.raises(grpc.RpcError) as error:
            c.animate(SOURCE, voice, tmp_path / "x.mp4", timeout=300, audio_options=audio_options(sampling_steps=2))
        assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "liveportrait-export --audio" in error.value.details()


def test_without_eye_blinks_the_eyes_keep_the_source_expression_and_the_rest_moves():
    rng = np.random.default_rng(0)
    n = 4
    motion = Motion(np.ones(n, np.float32), np.tile(np.eye(3, dtype=np.float32), (n, 1, 1)),
                    rng.standard_normal((n, 21, 3)).astype(np.float32), np.zeros((n, 3), np.float32))
    source_exp = rng.standard_normal((21, 3)).astype(np.float32)
    held = with_source_eyes(motion, source_exp)
    eyes = list(EYE_KEYPOINTS)
    others = [k for k in range(21) if k not in eyes]
    assert np.array_equal(held.exp[:, eyes], np.broadcast_to(source_exp[eyes], (n, len(eyes), 3)))
    assert np.array_equal(held.exp[:, others], motion.exp[:, others])  # lips and the rest as generated
    assert not np.array_equal(motion.exp[:, eyes], held.exp[:, eyes])  # the input motion is left as it was


def decoded_frames(path: Path) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


@pytest.mark.triton
def test_a_template_extracted_from_the_voice_reproduces_its_frames(client, voice, tmp_path):
    """ExtractMotion of a voice for a portrait gives the motion its driving_audio drives that portrait with: the
    same portrait animated with the template renders the same frames (exactly: the same keypoints reach the same
    served models; the template carries float32 values, as the motion is computed)."""
    voice_options = audio_options(seed=7, sampling_steps=3, eye_blinks=False, head_motion=0.5)
    template = client.extract_motion(voice, timeout=600, source=SOURCE, audio_options=voice_options)
    expected = math.ceil(SECONDS * 25)
    assert (template.n_frames, template.fps.num, template.fps.den) == (expected, 25, 1)
    assert template.origin == voice.name
    client.animate(SOURCE, voice, tmp_path / "voice.mp4", timeout=600, audio=False, audio_options=voice_options)
    client.animate(SOURCE, template, tmp_path / "template.mp4", timeout=600)
    from_voice, from_template = decoded_frames(tmp_path / "voice.mp4"), decoded_frames(tmp_path / "template.mp4")
    assert from_voice.shape == from_template.shape and len(from_voice) == expected
    assert np.array_equal(from_voice, from_template)
    assert not np.array_equal(from_voice[0], from_voice[-1])  # the voice moves the portrait

    with pytest.raises(grpc.RpcError) as error:  # a voice's motion needs the portrait it is generated for
        client.stub.ExtractMotion(iter([pb.ExtractMotionRequest(setup=pb.ExtractMotionSetup(
            driving_audio=pb.DrivingAudio(options=voice_options)))]), timeout=60)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "source_image" in error.value.details()


@pytest.mark.triton
def test_the_motion_is_generated_for_the_sources_own_eye_openness(client, voice):
    """Without eye conditions in the request, the motion is generated for the source's eyes as measured on its face
    (s0.jpg's measure about 1.05): not the same motion as for the defaults' 0.9, and given explicitly, the request's
    values are the ones used."""
    def motion(**eyes) -> np.ndarray:
        template = client.extract_motion(voice, timeout=600, source=SOURCE,
                                         audio_options=audio_options(seed=3, sampling_steps=2, **eyes))
        return np.array([list(frame.exp) for frame in template.frames])

    measured, default = motion(), motion(eye_open=[0.9, 0.9])
    assert not np.array_equal(measured, default)
    assert np.array_equal(default, motion(eye_open=[0.9, 0.9])) and not np.array_equal(default, motion(eye_open=[1.2, 1.2]))


def test_the_client_sends_a_voice_to_extract_motion_with_its_portrait(voice):
    with pytest.raises(InputError, match="source image"):
        extract_requests(voice)
    requests = list(extract_requests(voice, source=SOURCE, audio_options=audio_options(seed=4)))
    setup = requests[0].setup
    assert setup.driving_audio.filename == voice.name and setup.driving_audio.options.seed == 4
    assert setup.source_image == SOURCE.read_bytes() and not setup.HasField("driving_video")
    assert b"".join(r.driving_chunk for r in requests[1:]) == voice.read_bytes()
