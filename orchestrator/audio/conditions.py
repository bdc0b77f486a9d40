"""Per-frame conditions of the motion generator (Ditto ``condition_handler.py``), for an image source:
``[audio features 1024 | emotion 8 | eye openness 2 | eye-ball 6 | source canonical keypoints 63]`` = 1103.

The emotion is a softmax over Ditto's 8 classes with logit 8 on the chosen ones (0 elsewhere); the eye conditions
and the canonical keypoints are the source's, the same on every frame.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

EMOTIONS = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise", "contempt")
NEUTRAL = EMOTIONS.index("neutral")
CONDITION_DIM = 1024 + 8 + 2 + 6 + 63  # 1103


def emotion_vector(labels: int | str | Sequence[int | str] = NEUTRAL) -> np.ndarray:
    """(8,) softmax with logit 8 on each chosen class (index or name)."""
    chosen = [labels] if isinstance(labels, (int, str)) else list(labels)
    if not chosen or len(chosen) >= len(EMOTIONS):
        raise ValueError(f"choose 1 to {len(EMOTIONS) - 1} emotions of {', '.join(EMOTIONS)}")
    logits = np.zeros(len(EMOTIONS), np.float64)
    for label in chosen:
        index = EMOTIONS.index(label) if isinstance(label, str) and label in EMOTIONS else label
        if not isinstance(index, int) or not 0 <= index < len(EMOTIONS):
            raise ValueError(f"unknown emotion {label!r}; choose one of {', '.join(EMOTIONS)} (or 0-7)")
        logits[index] = 8.0
    e = np.exp(logits - logits.max())
    return (e / e.sum()).astype(np.float32)


@dataclass(frozen=True)
class SourceConditions:
    """What the source portrait contributes to every frame's conditions."""

    eye_open: np.ndarray  # (2,)
    eye_ball: np.ndarray  # (6,)
    canonical_kp: np.ndarray  # (63,) the motion extractor's raw ``kp``

    def vector(self) -> np.ndarray:
        parts = (self.eye_open, self.eye_ball, self.canonical_kp)
        sizes = (2, 6, 63)
        for part, size in zip(parts, sizes):
            if np.asarray(part).size != size:
                raise ValueError(f"source conditions: expected sizes {sizes}")
        return np.concatenate([np.asarray(p, np.float32).reshape(-1) for p in parts])


def frame_conditions(features: np.ndarray, source: SourceConditions,
                     emotion: np.ndarray | None = None) -> np.ndarray:
    """(n, 1024) audio feature frames -> (n, 1103) conditions."""
    features = np.asarray(features, np.float32)
    emotion = emotion_vector() if emotion is None else np.asarray(emotion, np.float32).reshape(8)
    rest = np.concatenate([emotion, source.vector()])
    return np.concatenate([features, np.broadcast_to(rest, (len(features), len(rest)))], axis=1)
