"""Named FaceMesh-468 indices (image left = the subject's right), and the mapping onto the iBUG 68-point layout.

The 68-point layout is one the official crop code knows (``parse_pt2_from_pt68``): eye centres from the eye
corners, mouth centre from the mouth corners, and an extent (jaw from ear to ear, brows, chin) equivalent to the
InsightFace 106-point layout the official source crop uses. It is the common MediaPipe -> dlib correspondence.
"""
from __future__ import annotations

import numpy as np

# eyes: corners and mid-lid points
LEFT_EYE_OUTER_IMAGE_LEFT = 33  # outer corner of the eye on the image left
EYE_IMAGE_LEFT = {"outer": 33, "inner": 133, "upper": 159, "lower": 145}
EYE_IMAGE_RIGHT = {"outer": 263, "inner": 362, "upper": 386, "lower": 374}
RIGHT_EYE_OUTER_IMAGE_RIGHT = 263
# lips
MOUTH_CORNERS = (61, 291)
INNER_LIP = (13, 14)  # upper, lower
NOSE_TIP = 1

MESH_TO_68 = np.array([
    # jaw 0-16, image left ear -> chin -> image right ear
    127, 234, 93, 132, 58, 136, 150, 176, 152, 400, 379, 365, 288, 361, 323, 454, 356,
    # brows 17-21 (image left), 22-26 (image right)
    70, 63, 105, 66, 107, 336, 296, 334, 293, 300,
    # nose bridge 27-30, nostrils 31-35
    168, 197, 5, 4, 75, 97, 2, 326, 305,
    # eyes 36-41 (image left), 42-47 (image right): outer corner, upper lid x2, inner corner, lower lid x2
    33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380,
    # outer lips 48-59: corner, upper, ..., corner, lower ...
    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181,
    # inner lips 60-67
    78, 82, 13, 312, 308, 317, 14, 87,
])


def mesh_to_68(landmarks: np.ndarray) -> np.ndarray:
    """468 FaceMesh points -> the 68-point layout (x, y)."""
    return np.asarray(landmarks)[MESH_TO_68, :2]
