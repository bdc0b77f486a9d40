"""The generated motion: the 265-d vector per frame and the window arithmetic (Ditto ``audio2motion.py``).

Layout, in the motion extractor's raw output space: ``[scale - 1 | pitch 66 | yaw 66 | roll 66 | t 3 | exp 63]``
(pitch/yaw/roll are the 66 bin logits). The first 202 dimensions (scale and the three angles) are the pose.

Windows of ``L`` = 80 frames overlap by ``overlap`` frames; each new window contributes its ``L - overlap`` valid
frames. ``fuse`` cross-fades the last ``fuse_length`` frames of the sequence so far into the new window's frames
just before its valid part (weights 0, 1/n, ..., (n-1)/n for the new window); ``smooth_pose`` is a 3-frame mean of
the pose dimensions over a range of frames (each frame from the values before smoothing).
"""
from __future__ import annotations

import numpy as np

F32 = np.float32
MOTION_DIM = 265
POSE_DIMS = 202
FIELDS = (("scale", 1), ("pitch", 66), ("yaw", 66), ("roll", 66), ("t", 3), ("exp", 63))


def motion_vector(raw: dict[str, np.ndarray]) -> np.ndarray:
    """(265,) vector of one frame's raw motion-extractor outputs (scale stored as scale - 1; ``kp`` not included)."""
    parts = []
    for name, size in FIELDS:
        value = np.asarray(raw[name], F32).reshape(-1)
        if value.size != size:
            raise ValueError(f"motion field {name}: expected {size} values, got {value.size}")
        parts.append(value - F32(1) if name == "scale" else value)
    return np.concatenate(parts)


def motion_fields(vectors: np.ndarray) -> dict[str, np.ndarray]:
    """(N, 265) vectors -> {field: (N, size)} with the scale restored (+1)."""
    vectors = np.asarray(vectors, F32).reshape(-1, MOTION_DIM)
    fields, start = {}, 0
    for name, size in FIELDS:
        value = vectors[:, start:start + size]
        fields[name] = value + F32(1) if name == "scale" else value.copy()
        start += size
    return fields


def fuse_weights(fuse_length: int) -> np.ndarray:
    """(fuse_length,) weights of the new window over the overlap: 0, 1/n, ..., (n-1)/n."""
    return (np.arange(fuse_length, dtype=F32) / fuse_length).astype(F32)


def fuse(sequence: np.ndarray, window: np.ndarray, fuse_length: int, valid: int) -> np.ndarray:
    """Cross-fade ``window`` (L, D) into ``sequence`` (n, D) and append its ``valid`` last frames -> (n + valid, D)."""
    L = len(window)
    alpha = fuse_weights(fuse_length)[:, None]
    out = sequence.copy()
    theirs = window[L - valid - fuse_length:L - valid]
    out[-fuse_length:] = out[-fuse_length:] * (1 - alpha) + theirs * alpha
    return np.concatenate([out, window[L - valid:]])


def smooth_pose(sequence: np.ndarray, start: int, end: int, k: int = 3) -> np.ndarray:
    """Frames [start, end) of the pose dimensions replaced by the mean over a k-frame neighbourhood (clipped)."""
    if k <= 1:
        return sequence
    out = sequence.copy()
    half, n = k // 2, len(sequence)
    for i in range(max(start, 0), min(end, n)):
        out[i, :POSE_DIMS] = sequence[max(0, i - half):min(n, i + half + 1), :POSE_DIMS].mean(0)
    return out
