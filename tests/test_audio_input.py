"""The driving audio: every supported format decoded and resampled to 16 kHz mono float32, any rate and channel
layout; silence and clipping accepted; corrupt, video-only and too-long files refused in words, with memory bounded by
the limit; the output MP4 carries the voice as AAC."""
from __future__ import annotations

import tracemalloc
from fractions import Fraction

import av
import numpy as np
import pytest

from audio_files import FORMATS, chirp, repeated_mp3, write_audio
from orchestrator.audio.features import num_frames
from orchestrator.audio_input import SAMPLE_RATE, InvalidAudioError, decode_audio, probe_audio
from orchestrator.media import FragmentedMp4Writer
from test_media import make_video


def dominant_hz(samples: np.ndarray, start: float, seconds: float = 0.1) -> float:
    """The strongest frequency of a 0.1 s piece of 16 kHz samples."""
    piece = samples[int(start * SAMPLE_RATE):int((start + seconds) * SAMPLE_RATE)]
    spectrum = np.abs(np.fft.rfft(piece * np.hanning(len(piece))))
    return float(np.argmax(spectrum) * SAMPLE_RATE / len(piece))


@pytest.mark.parametrize("suffix", sorted(FORMATS))
def test_every_format_decodes_to_16k_mono_with_its_length_and_pitch(tmp_path, suffix):
    path = write_audio(tmp_path / f"speech{suffix}", chirp(2.0, 44100), 44100, "stereo")
    probe_audio(path)
    samples = decode_audio(path)
    assert samples.dtype == np.float32 and samples.ndim == 1
    # lossy codecs add their priming delay (AAC ~1024 samples): within 50 ms of the clip's 2 s
    assert abs(len(samples) / SAMPLE_RATE - 2.0) < 0.05
    assert 0.3 < np.abs(samples).max() <= 1.0  # the chirp's amplitude 0.5, not down-mixed louder or quieter
    # the chirp sweeps 200 -> 2000 Hz over 2 s: at 1 s it is at 1100 Hz (lossy codecs shift it by their delay)
    assert dominant_hz(samples, 0.95) == pytest.approx(1100, abs=80)


@pytest.mark.parametrize("rate,layout", [(8000, "mono"), (22050, "stereo"), (48000, "5.1"), (96000, "mono")])
def test_any_rate_and_layout_is_resampled_to_16k_mono(tmp_path, rate, layout):
    path = write_audio(tmp_path / "voice.wav", chirp(1.0, rate), rate, layout)
    info = probe_audio(path)
    assert (info.sample_rate, info.channels) == (rate, av.AudioLayout(layout).nb_channels)
    samples = decode_audio(path)
    assert len(samples) == SAMPLE_RATE  # one second, exactly
    rms = float(np.sqrt(np.mean(samples ** 2)))
    assert rms == pytest.approx(0.5 / np.sqrt(2), abs=0.02)  # the channels averaged (as librosa does), not summed
    assert dominant_hz(samples, 0.45) == pytest.approx(1100, abs=60)


def test_silence_is_valid_audio(tmp_path):
    path = write_audio(tmp_path / "silence.wav", np.zeros(24000, np.float32), 16000)
    samples = decode_audio(path)
    assert len(samples) == 24000 and not samples.any()
    assert num_frames(len(samples)) == 38  # ceil(1.5 s * 25): the video still has the audio's length


def test_clipped_audio_is_accepted_and_kept_within_full_scale(tmp_path):
    loud = np.clip(chirp(1.0, 16000, amplitude=3.0), -1, 1)  # a clipped recording: flat tops at full scale
    samples = decode_audio(write_audio(tmp_path / "clipped.flac", loud, 16000))
    assert len(samples) == 16000 and np.abs(samples).max() == pytest.approx(1.0, abs=1e-3)
    beyond = chirp(1.0, 16000, amplitude=4.0)  # a float WAV may hold values beyond full scale, and NaN
    beyond[100] = np.nan
    samples = decode_audio(write_audio(tmp_path / "float.wav", beyond, 16000, codec="pcm_f32le"))
    assert np.isfinite(samples).all() and np.abs(samples).max() == 1.0


@pytest.mark.parametrize("data", [b"", b"RIFF\x00\x00\x00\x00WAVEfmt garbage", bytes(range(256)) * 64,
                                  b"ID3\x04\x00\x00\x00\x00\x00\x10" + b"\xff" * 5000])
def test_corrupt_bytes_are_refused_in_words(tmp_path, data):
    path = tmp_path / "upload-1.bin"
    path.write_bytes(data)
    with pytest.raises(InvalidAudioError, match="^the driving audio") as refused:
        probe_audio(path)
        decode_audio(path)
    assert str(path) not in str(refused.value) and "upload-" not in str(refused.value)


def test_a_truncated_file_is_refused_or_decoded_up_to_the_damage(tmp_path):
    whole = write_audio(tmp_path / "whole.m4a", chirp(2.0, 44100), 44100).read_bytes()
    path = tmp_path / "cut.m4a"
    path.write_bytes(whole[:len(whole) // 3])  # the moov atom is at the end: nothing is readable
    with pytest.raises(InvalidAudioError, match="^the driving audio cannot be read"):
        probe_audio(path)


def test_a_video_without_sound_is_refused_naming_driving_video(tmp_path):
    video = make_video(tmp_path / "d.mp4", 10, Fraction(25))
    with pytest.raises(InvalidAudioError, match="no audio stream.*driving_video"):
        probe_audio(video)


def test_the_sound_of_a_video_is_usable_as_driving_audio(tmp_path):
    video = make_video(tmp_path / "d.mp4", 25, Fraction(25), audio_seconds=1.0)
    assert abs(len(decode_audio(video)) / SAMPLE_RATE - 1.0) < 0.1  # + the AAC encoder's padding


def test_a_two_hour_file_is_refused_from_its_header_before_decoding(tmp_path):
    path = repeated_mp3(tmp_path / "two-hours.mp3", 7200)
    tracemalloc.start()
    try:
        with pytest.raises(InvalidAudioError, match="longer than the limit of 600 seconds"):
            probe_audio(path, max_seconds=600)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000  # nothing decoded (2 hours at 16 kHz would be 460 MB of float32)


def test_decoding_stops_at_the_limit_whatever_the_header_says(tmp_path):
    """A header may under-state the length (or give none): the decoder counts and stops at the limit."""
    path = repeated_mp3(tmp_path / "two-hours.mp3", 7200)
    tracemalloc.start()
    try:
        with pytest.raises(InvalidAudioError, match="longer than the limit of 3 seconds"):
            decode_audio(path, max_seconds=3)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 3 * SAMPLE_RATE * 4 * 3  # a few copies of the 3 s allowed, not the 2 hours


def test_the_mp4_carries_the_driving_audio_as_aac_for_its_length(tmp_path):
    """The audio-driven video: ceil(seconds * 25) frames at 25 fps with the voice muxed, both 2.3 s long."""
    voice = write_audio(tmp_path / "voice.mp3", chirp(2.3, 22050), 22050)
    frames = num_frames(len(decode_audio(voice)))
    assert frames == 58
    writer = FragmentedMp4Writer(64, 48, Fraction(25), audio_from=voice)
    assert writer.has_audio
    image = np.full((48, 64, 3), 128, np.uint8)
    data = b"".join([writer.write([image] * 8) for _ in range(7)] + [writer.write([image] * 2), writer.close()])
    out = tmp_path / "out.mp4"
    out.write_bytes(data)
    with av.open(str(out)) as c:
        video, audio = c.streams.video[0], c.streams.audio[0]
        assert audio.codec_context.name == "aac" and video.average_rate == 25
        decoded = list(c.decode(video))
    assert len(decoded) == frames
    with av.open(str(out)) as c:
        audio = c.streams.audio[0]
        rate = audio.codec_context.sample_rate
        seconds = sum(f.samples for f in c.decode(audio)) / rate
    # all of the voice, ending with the video (plus at most the encoder's priming frame and one last frame)
    assert 2.3 <= seconds <= frames / 25 + 2 * 1024 / rate
