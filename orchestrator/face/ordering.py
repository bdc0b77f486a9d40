"""Face ordering (the official ``sort_by_direction`` orderings) and selection by index or box hint."""
from __future__ import annotations

from typing import Sequence, TypeVar

import numpy as np

from ..quoting import quote
from .blazeface import iou

ORDERINGS = ("large-small", "small-large", "left-right", "right-left", "top-bottom", "bottom-top")

T = TypeVar("T")


class FaceSelectionError(ValueError):
    """The requested face index or ordering does not exist."""


def _area(box: np.ndarray) -> float:
    return float((box[2] - box[0]) * (box[3] - box[1]))


def order_faces(faces: Sequence[T], direction: str = "large-small") -> list[T]:
    """Sort objects with a ``box`` [x1, y1, x2, y2] like the official code (stable for ties)."""
    keys = {
        "large-small": (lambda f: _area(f.box), True),
        "small-large": (lambda f: _area(f.box), False),
        "left-right": (lambda f: float(f.box[0]), False),
        "right-left": (lambda f: float(f.box[0]), True),
        "top-bottom": (lambda f: float(f.box[1]), False),
        "bottom-top": (lambda f: float(f.box[1]), True),
    }
    if direction not in keys:
        raise FaceSelectionError(f"unknown face ordering {quote(direction)}; choose one of {', '.join(ORDERINGS)}")
    key, reverse = keys[direction]
    return sorted(faces, key=key, reverse=reverse)


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(iou(np.asarray(a, np.float64), np.asarray(b, np.float64)[None])[0])


def overlaps_any(boxes: Sequence[np.ndarray], hint: np.ndarray) -> bool:
    """Whether any of ``boxes`` overlaps the ``hint`` box at all."""
    return any(box_iou(box, hint) > 0 for box in boxes)


def select_face(faces: Sequence[T], index: int = 0, hint: np.ndarray | None = None) -> T:
    """The face at ``index`` of an ordered list, or, with a box hint, the face overlapping the hint most."""
    if not faces:
        raise FaceSelectionError("there is no face to select")
    if hint is not None:
        hint = np.asarray(hint, np.float64)
        best = max(faces, key=lambda f: box_iou(np.asarray(f.box, np.float64), hint))
        if box_iou(np.asarray(best.box, np.float64), hint) <= 0:
            raise FaceSelectionError("no detected face overlaps the face hint box")
        return best
    if not -len(faces) <= index < len(faces):
        raise FaceSelectionError(f"face index {index} is out of range: {len(faces)} face(s) found")
    return faces[index]
