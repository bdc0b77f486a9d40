"""Streaming decode and fragmented MP4 encode: frame counts, rational frame rates, audio, even sizes, progressive bytes."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from orchestrator.media import EncodeSettings, FragmentedMp4Writer, InvalidVideoError, probe, read_frames

from video_checks import playable_frames

DRIVING = Path(__file__).resolve().parents[1].parent / "shared" / "examples" / "driving"


def make_video(path: Path, frames: int, fps: Fraction, size=(64, 48), audio_seconds: float = 0.0) -> Path:
    """A small test video (moving gradient), optionally with a sine-tone AAC track."""
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = size[0], size[1], "yuv420p"
        audio = out.add_stream("aac", rate=16000) if audio_seconds else None
        for i in range(frames):
            image = np.full((size[1], size[0], 3), (i * 7) % 256, np.uint8)
            out.mux(video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        out.mux(video.encode(None))
        if audio:
            t = np.arange(int(16000 * audio_seconds)) / 16000
            samples = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            for start in range(0, len(samples), 1024):
                frame = av.AudioFrame.from_ndarray(samples[None, start:start + 1024], format="fltp", layout="mono")
                frame.sample_rate = 16000
                out.mux(audio.encode(frame))
            out.mux(audio.encode(None))
    return path


def read_back(data: bytes, path: Path) -> tuple[av.video.stream.VideoStream, int, bool, str]:
    path.write_bytes(data)
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        rate, codec, pix = stream.average_rate, stream.codec_context.name, stream.codec_context.pix_fmt
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(stream)]
    with av.open(str(path)) as c:
        has_audio = bool(c.streams.audio)
    return rate, frames, has_audio, f"{codec}/{pix}"


def test_probe_and_chunked_decode_of_an_example(tmp_path):
    info = probe(DRIVING / "d0.mp4")
    assert info.fps == 25 and (info.width, info.height) == (512, 512) and not info.has_audio
    chunks = list(read_frames(DRIVING / "d0.mp4", chunk=16, max_frames=10_000))
    assert [len(c) for c in chunks[:-1]] == [16] * (len(chunks) - 1)
    assert sum(len(c) for c in chunks) == info.frames == 78
    assert chunks[0][0].shape == (512, 512, 3) and chunks[0][0].dtype == np.uint8


def test_frame_limit_and_garbage_are_invalid(tmp_path):
    with pytest.raises(InvalidVideoError, match="more than 10 frames"):
        list(read_frames(DRIVING / "d0.mp4", chunk=4, max_frames=10))
    garbage = tmp_path / "x.mp4"
    garbage.write_bytes(b"this is not a video" * 100)
    with pytest.raises(InvalidVideoError):
        probe(garbage)


@pytest.mark.parametrize("fps", [Fraction(30000, 1001), Fraction(25), Fraction(24000, 1001)])
def test_encode_keeps_frame_count_and_fractional_rate(tmp_path, fps):
    frames = [np.random.default_rng(i).integers(0, 256, (48, 64, 3), np.uint8) for i in range(37)]
    writer = FragmentedMp4Writer(64, 48, fps)
    data = b"".join([writer.write(frames[:20]), writer.write(frames[20:]), writer.close()])
    rate, decoded, has_audio, codec = read_back(data, tmp_path / "o.mp4")
    assert len(decoded) == 37 and decoded[0].shape == (48, 64, 3)
    assert rate == fps
    assert codec == "h264/yuv420p" and not has_audio


def test_bytes_arrive_progressively_and_audio_is_muxed(tmp_path):
    source = make_video(tmp_path / "in.mp4", 60, Fraction(30), audio_seconds=2.0)
    info = probe(source)
    assert info.has_audio and info.fps == 30
    writer = FragmentedMp4Writer(64, 48, info.fps, audio_from=source)
    parts = [writer.write(chunk) for chunk in read_frames(source, chunk=10, max_frames=1000)]
    parts.append(writer.close())
    assert sum(1 for p in parts[:-1] if p) >= 2, "fragments must be delivered before the end"
    rate, decoded, has_audio, _ = read_back(b"".join(parts), tmp_path / "o.mp4")
    assert len(decoded) == 60 and has_audio
    with av.open(str(tmp_path / "o.mp4")) as c:
        audio = c.streams.audio[0]
        seconds = sum(f.samples for f in c.decode(audio)) / audio.codec_context.sample_rate
    assert 1.9 <= seconds <= 2.2


def test_low_latency_makes_every_chunk_playable_at_once(tmp_path):
    """A 24-frame clip (under a second) written 8 frames at a time: by default no frame can be shown before the end
    (the fragment closes at the next keyframe); with low latency the frames leave the encoder at most one chunk
    later, and the finished file is the same video."""
    source = make_video(tmp_path / "in.mp4", 24, Fraction(25))
    chunks = list(read_frames(source, chunk=8, max_frames=100))
    for low_latency in (False, True):
        writer = FragmentedMp4Writer(64, 48, Fraction(25), EncodeSettings(low_latency=low_latency))
        received, playable = b"", []
        for chunk in chunks:
            received += writer.write(chunk)
            playable.append(playable_frames(received, tmp_path / "partial.mp4"))
        if low_latency:  # at most one chunk behind: the encoder holds ~6 frames
            assert playable[0] > 0 and all(n >= 8 * k for k, n in enumerate(playable)), playable
        else:
            assert playable == [0, 0, 0]
        rate, decoded, _, _ = read_back(received + writer.close(), tmp_path / f"out-{low_latency}.mp4")
        assert len(decoded) == 24 and rate == 25


def test_odd_sizes_are_refused():
    with pytest.raises(ValueError, match="even"):
        FragmentedMp4Writer(63, 48, Fraction(25))


@pytest.mark.parametrize("rotation", [-90, 90, 180])
def test_frames_come_out_upright_whatever_the_display_rotation(tmp_path, rotation):
    """A phone stores a portrait video sideways plus a display rotation; the decoded frames are turned upright."""
    rng = np.random.default_rng(0)
    upright_frame = np.kron(rng.integers(0, 256, (6, 4, 3), dtype=np.uint8), np.ones((16, 16, 1), np.uint8))  # 96x64
    stored = np.ascontiguousarray(np.rot90(upright_frame, -rotation // 90))  # what the camera wrote
    path = tmp_path / "phone.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = stored.shape[1], stored.shape[0], "yuv420p"
        stream.options = {"crf": "10"}
        stream.set_display_rotation(rotation)
        for _ in range(3):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(stored, format="rgb24")))
        out.mux(stream.encode(None))
    (frames,) = list(read_frames(path, chunk=8, max_frames=10))
    assert len(frames) == 3
    for frame in frames:
        assert frame.shape == upright_frame.shape
        assert np.abs(frame.astype(int) - upright_frame.astype(int)).mean() < 6


def test_audio_requested_from_a_file_without_audio_gives_a_silent_video(tmp_path):
    source = make_video(tmp_path / "silent.mp4", 10, Fraction(25))
    writer = FragmentedMp4Writer(64, 48, Fraction(25), audio_from=source)
    assert not writer.has_audio
    data = b"".join(writer.write(chunk) for chunk in read_frames(source, chunk=5, max_frames=100)) + writer.close()
    rate, decoded, has_audio, _ = read_back(data, tmp_path / "o.mp4")
    assert len(decoded) == 10 and not has_audio
