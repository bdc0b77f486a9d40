"""Motion sequences from conditions (Ditto ``Audio2Motion`` with the offline and online loops of
``stream_pipeline_offline.py`` / ``stream_pipeline_online.py``).

A ``MotionGenerator`` turns windows of 80 conditions into the growing motion sequence: it samples the window
conditioned on one motion vector (``kp_cond``: the source's for the first window), fuses it onto the sequence,
smooths the pose around the seam and sets the next window's ``kp_cond`` to the frame just before that window. ``fix_kp_cond = 1`` (online) resets
it to the source's motion each window, keeping only the pose dimensions [0:202] from the sequence.

* ``offline_motion``: a whole clip, windows every 70 frames (overlap 10, 50 steps), cut to the clip and smoothed
  once more.
* ``StreamingMotion``: a live stream, one window per 10 new feature frames (overlap 70, 10 steps), starting from a
  buffer of 70 frames of silence; emits 10 frames per window once the first window has set the reference ``d0``.
  Frames 0-9 of the speech come out of the second window, which needs 20 feature frames, i.e. 4 encoder windows
  (0.885 s of audio, the encoder's right context included).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .motion import MOTION_DIM, POSE_DIMS, fuse, smooth_pose
from .sampler import DdimSampler, StepObserver

F32 = np.float32
SEQ_FRAMES = 80


@dataclass(frozen=True)
class MotionSettings:
    overlap: int  # frames shared by consecutive windows
    steps: int  # DDIM sampling steps
    fix_kp_cond: int  # 0: kp_cond from the sequence; n > 0: every n windows reset to the source (but the pose dims)
    online: bool  # fuse only the frames just before the valid part (fuse length = min(overlap, valid))
    smooth_k: int = 3

    @property
    def valid(self) -> int:
        return SEQ_FRAMES - self.overlap

    @property
    def fuse_length(self) -> int:
        return min(self.overlap, self.valid) if self.online else self.overlap


OFFLINE = MotionSettings(overlap=10, steps=50, fix_kp_cond=0, online=False)
ONLINE = MotionSettings(overlap=70, steps=10, fix_kp_cond=1, online=True)


class MotionGenerator:
    def __init__(self, sampler: DdimSampler, settings: MotionSettings, source_vector: np.ndarray):
        self.sampler = sampler
        self.settings = settings
        self.source_vector = np.asarray(source_vector, F32).reshape(1, -1)
        self.kp_cond = self.source_vector.copy()
        self.sequence: np.ndarray | None = None  # (n, 265)
        self.windows = 0

    def add_window(self, cond: np.ndarray, observe: StepObserver | None = None) -> np.ndarray:
        """cond (80, 1103) -> the sequence with this window fused in."""
        s = self.settings
        window = self.sampler.sample(self.kp_cond, np.asarray(cond, F32)[None], observe)[0]
        if self.sequence is None:
            sequence = smooth_pose(window, 0, len(window), s.smooth_k)
        else:
            sequence = fuse(self.sequence, window, s.fuse_length, s.valid)
            n = len(sequence)
            sequence = smooth_pose(sequence, n - s.valid - s.fuse_length, n - s.valid + 1, s.smooth_k)
        self.windows += 1
        following = sequence[len(sequence) - s.overlap - 1]
        if s.fix_kp_cond > 0 and self.windows % s.fix_kp_cond == 0:
            self.kp_cond = self.source_vector.copy()
            self.kp_cond[0, :POSE_DIMS] = following[:POSE_DIMS]
        else:
            self.kp_cond = following[None].copy()
        self.sequence = sequence
        return sequence

    def trim(self, keep: int) -> int:
        """Forget all but the last ``keep`` frames (bounded memory when streaming); returns how many were dropped."""
        dropped = max(0, len(self.sequence) - keep)
        self.sequence = self.sequence[dropped:]
        return dropped


def window_conditions(conditions: np.ndarray, start: int) -> np.ndarray:
    """conditions[start:start + 80], padded by repeating the last row."""
    cond = conditions[start:start + SEQ_FRAMES]
    if len(cond) < SEQ_FRAMES:
        cond = np.concatenate([cond, np.repeat(cond[-1:], SEQ_FRAMES - len(cond), axis=0)])
    return cond


WindowObserver = Callable[[int], StepObserver | None]  # window index -> that window's step observer (or None)


def offline_motion(generator: MotionGenerator, conditions: np.ndarray,
                   observe: WindowObserver | None = None) -> np.ndarray:
    """(N, 1103) conditions of a whole clip -> (N, 265) motion."""
    if len(conditions) == 0:
        raise ValueError("no audio frames to animate")
    s = generator.settings
    for index, start in enumerate(range(0, len(conditions), s.valid)):
        generator.add_window(window_conditions(conditions, start), observe(index) if observe else None)
    return smooth_pose(generator.sequence[:len(conditions)], 0, len(conditions), s.smooth_k)


class StreamingMotion:
    """Feature frames in (any number at a time), motion frames out as soon as a window completes.

    ``conditions``: (n, 1024) features -> (n, 1103). ``silence``: the features the stream starts from (overlap
    frames, see ``features.silence_features``). ``reference``: the motion ``d0`` that stitching is relative to,
    set by the first window (its first frame).
    """

    def __init__(self, generator: MotionGenerator, conditions: Callable[[np.ndarray], np.ndarray],
                 silence: np.ndarray, observe: WindowObserver | None = None):
        s = generator.settings
        if len(silence) != s.overlap:
            raise ValueError(f"the silence buffer must hold {s.overlap} feature frames")
        self.generator = generator
        self.conditions = conditions
        self.observe = observe
        self.features = np.asarray(silence, F32)
        self.position = 0  # start of the next window in ``features``
        self.emit_from: int | None = None  # index in the generator's sequence of the next frame to emit
        self.reference: np.ndarray | None = None

    def push(self, features: np.ndarray) -> np.ndarray:
        """Add feature frames; return the motion frames (m, 265) now final."""
        self.features = np.concatenate([self.features, np.asarray(features, F32).reshape(-1, self.features.shape[1])])
        out = []
        while len(self.features) - self.position >= SEQ_FRAMES:
            out.append(self._window(self.features[self.position:self.position + SEQ_FRAMES],
                                    self.generator.settings.valid))
        return self._frames(out)

    def finish(self) -> np.ndarray:
        """End of the stream: the last window (its features padded by repeating the last one). As the official
        online loop, it also emits the frames a following window would have cross-faded (up to 10 more)."""
        out = []
        remaining = len(self.features) - self.position
        if remaining > 0:
            out.append(self._window(window_conditions(self.features[self.position:], 0), remaining))
        return self._frames(out)

    def _window(self, features: np.ndarray, valid: int) -> np.ndarray:
        g = self.generator
        g.add_window(self.conditions(features), self.observe(g.windows) if self.observe else None)
        self.position += valid
        emitted = np.zeros((0, g.sequence.shape[1]), F32)
        if self.emit_from is None:
            self.emit_from = len(g.sequence) - g.settings.fuse_length
            self.reference = g.sequence[0].copy()
        else:
            emitted = g.sequence[self.emit_from:self.emit_from + valid].copy()
            self.emit_from += valid
        keep = 2 * SEQ_FRAMES
        self.emit_from -= g.trim(keep)
        if len(self.features) > keep:  # bounded memory: the look-back never exceeds one window
            drop = min(len(self.features) - keep, self.position)
            self.features, self.position = self.features[drop:], self.position - drop
        return emitted

    @staticmethod
    def _frames(parts: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(parts) if parts else np.zeros((0, MOTION_DIM), F32)
