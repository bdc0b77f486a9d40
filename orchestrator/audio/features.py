"""Audio -> feature frames (Ditto ``wav2feat.py`` / ``inference.py``): the audio encoder sees 6480-sample windows
(0.405 s at 16 kHz) and gives 20 frames at 50 Hz; frames [-14:-4] are averaged in pairs into 5 feature frames at
25 fps, one window every 5 frames (3200 samples). ``encode`` is any callable (B, 6480) float32 -> (B, 20, 1024).

Offline, the clip is padded with 2000 zeros in front and one window of zeros behind and cut to
``ceil(seconds * 25)`` frames. Streaming, 1920 zeros go in front, windows start every 3200 samples and the last ones
are zero-padded; the generator starts from a buffer of features of silence (``silence_features``).
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

SAMPLE_RATE = 16000
FPS = 25
CHUNKSIZE = (3, 5, 2)  # frames of left context, frames produced, frames of right context (per window)
WINDOW = int(sum(CHUNKSIZE) * 0.04 * SAMPLE_RATE) + 80  # 6480 samples
HOP = CHUNKSIZE[1] * 640  # 3200 samples = 5 frames
FRAMES_PER_WINDOW = CHUNKSIZE[1]
OFFLINE_LEAD = WINDOW - int(sum(CHUNKSIZE[1:]) * 0.04 * SAMPLE_RATE)  # 2000 zeros before the clip
STREAM_LEAD = CHUNKSIZE[0] * 640  # 1920 zeros before a stream
FEATURE_DIM = 1024

Encoder = Callable[[np.ndarray], np.ndarray]


def num_frames(num_samples: int) -> int:
    """Motion frames of a clip of ``num_samples`` at 16 kHz (25 fps, rounded up)."""
    return math.ceil(num_samples / SAMPLE_RATE * FPS)


def pool_encoding(encoding: np.ndarray) -> np.ndarray:
    """(B, 20, 1024) encoder frames -> (B, 5, 1024) feature frames: frames [-14:-4] averaged in pairs."""
    start, end = -sum(CHUNKSIZE[1:]) * 2, -CHUNKSIZE[2] * 2
    valid = encoding[:, start:end]
    return valid.reshape(len(encoding), FRAMES_PER_WINDOW, 2, -1).mean(2)


def offline_windows(audio: np.ndarray) -> np.ndarray:
    """The encoder windows (n, 6480) of a whole clip."""
    audio = np.asarray(audio, np.float32)
    padded = np.concatenate([np.zeros(OFFLINE_LEAD, np.float32), audio, np.zeros(WINDOW, np.float32)])
    starts = [int(i * 0.04 * SAMPLE_RATE) for i in range(0, num_frames(len(audio)), FRAMES_PER_WINDOW)]
    return np.stack([padded[s:s + WINDOW] for s in starts]) if starts else np.zeros((0, WINDOW), np.float32)


def encode_windows(encode: Encoder, windows: np.ndarray, batch: int = 16) -> np.ndarray:
    """(n, 6480) windows -> (n, 5, 1024) feature frames, ``batch`` windows per encoder call."""
    parts = [pool_encoding(np.asarray(encode(windows[i:i + batch]), np.float32)) for i in range(0, len(windows), batch)]
    return np.concatenate(parts) if parts else np.zeros((0, FRAMES_PER_WINDOW, FEATURE_DIM), np.float32)


def offline_features(encode: Encoder, audio: np.ndarray, batch: int = 16) -> np.ndarray:
    """(num_frames, 1024) feature frames of a whole clip."""
    features = encode_windows(encode, offline_windows(audio), batch).reshape(-1, FEATURE_DIM)
    return features[:num_frames(len(audio))]


def silence_features(encode: Encoder, frames: int) -> np.ndarray:
    """Features of ``frames`` frames of silence: the buffer a stream starts from (the generator's look-back)."""
    return offline_features(encode, np.zeros(frames * 640, np.float32))


class StreamWindows:
    """Cuts a stream of samples into encoder windows as they become complete (bounded memory)."""

    def __init__(self):
        self._buffer = np.zeros(STREAM_LEAD, np.float32)  # samples from the next window's start on

    def push(self, samples: np.ndarray) -> np.ndarray:
        """Append samples; return the windows (k, 6480) now complete."""
        self._buffer = np.concatenate([self._buffer, np.asarray(samples, np.float32).reshape(-1)])
        windows = []
        while len(self._buffer) >= WINDOW:
            windows.append(self._buffer[:WINDOW])
            self._buffer = self._buffer[HOP:]
        return np.stack(windows) if windows else np.zeros((0, WINDOW), np.float32)

    def finish(self) -> np.ndarray:
        """The last windows, zero-padded: one per remaining hop start."""
        windows = []
        while len(self._buffer) > 0:
            window = np.zeros(WINDOW, np.float32)
            window[:min(WINDOW, len(self._buffer))] = self._buffer[:WINDOW]
            windows.append(window)
            self._buffer = self._buffer[HOP:]
        return np.stack(windows) if windows else np.zeros((0, WINDOW), np.float32)
