"""Test audio written with PyAV: a chirp (a tone sweeping 200 -> 2000 Hz) in any container, codec, rate and layout."""
from __future__ import annotations

from pathlib import Path

import av
import numpy as np

# suffix -> (container format, encoder)
FORMATS = {".wav": ("wav", "pcm_s16le"), ".mp3": ("mp3", "libmp3lame"), ".m4a": ("ipod", "aac"),
           ".aac": ("adts", "aac"), ".ogg": ("ogg", "vorbis"), ".opus": ("ogg", "libopus"), ".flac": ("flac", "flac")}


def chirp(seconds: float, rate: int, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * rate))) / rate
    f0, f1 = 200.0, 2000.0
    phase = 2 * np.pi * (f0 * t + (f1 - f0) / (2 * max(seconds, 1e-9)) * t ** 2)
    return (amplitude * np.sin(phase)).astype(np.float32)


def write_audio(path: Path, samples: np.ndarray, rate: int, layout: str = "mono", codec: str | None = None,
                container: str | None = None) -> Path:
    """``samples`` (n,) float32 written on every channel of ``layout`` (a float WAV with codec="pcm_f32le" keeps
    values beyond full scale)."""
    fmt, encoder = FORMATS[path.suffix]
    encoder, fmt = codec or encoder, container or fmt
    channels = av.AudioLayout(layout).nb_channels
    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream(encoder, rate=48000 if encoder == "libopus" else rate, layout=layout)
        if encoder == "vorbis":  # FFmpeg's own Vorbis encoder is marked experimental
            stream.codec_context.options = {"strict": "experimental"}
        stream.codec_context.open()
        planar = np.ascontiguousarray(np.repeat(np.asarray(samples, np.float32)[None], channels, axis=0))
        frame = av.AudioFrame.from_ndarray(planar, format="fltp", layout=layout)
        frame.sample_rate = rate
        resampler = av.AudioResampler(format=stream.codec_context.format.name, layout=layout,
                                      rate=stream.codec_context.sample_rate,
                                      frame_size=stream.codec_context.frame_size or None)
        for chunk in [*resampler.resample(frame), *resampler.resample(None)]:
            out.mux(stream.encode(chunk))
        out.mux(stream.encode(None))
    return path


def repeated_mp3(path: Path, seconds: float) -> Path:
    """A long, small file cheaply: one second of an 8 kHz mono MP3 at 8 kbit/s encoded once and its packets
    repeated (2 hours: ~7 MB)."""
    rate = 8000
    with av.open(str(path), "w", format="mp3") as out:
        stream = out.add_stream("libmp3lame", rate=rate, layout="mono")
        stream.bit_rate = 8000
        frame = av.AudioFrame.from_ndarray(chirp(1.0, rate)[None].copy(), format="fltp", layout="mono")
        frame.sample_rate = rate
        resampler = av.AudioResampler(format=stream.codec_context.format.name, layout="mono", rate=rate,
                                      frame_size=stream.codec_context.frame_size)
        packets = [p for chunk in [*resampler.resample(frame), *resampler.resample(None)]
                   for p in stream.encode(chunk)] + list(stream.encode(None))
        packets = [p for p in packets if p.size]
        step = stream.codec_context.frame_size
        n = 0
        while n * step < seconds * rate:
            for packet in packets:
                packet.pts = packet.dts = n * step
                packet.stream = stream
                out.mux(packet)
                n += 1
    return path
