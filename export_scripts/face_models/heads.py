"""Serving graphs around the rebuilt MediaPipe networks: uint8 input normalisation and SSD anchor decoding in-graph.

``face_detector``: letterboxed RGB uint8 [N,128,128,3] -> ``boxes`` [N,896,4] (x1, y1, x2, y2) and ``keypoints``
[N,896,6,2] in letterbox pixels, ``scores`` [N,896] (sigmoid of the clipped logit).
``face_landmarks``: rotated face crop RGB uint8 [N,192,192,3] -> ``landmarks`` [N,468,3] in crop pixels (x, y, z),
``face_score`` [N,1] (face presence probability).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .tflite_graph import TFLiteModule

DETECTOR_SIZE = 128
LANDMARKS_SIZE = 192
NUM_ANCHORS = 896
NUM_KEYPOINTS = 6
NUM_LANDMARKS = 468
SCORE_CLIP = 100.0


def blazeface_anchors(size: int = DETECTOR_SIZE, strides: tuple[int, ...] = (8, 16, 16, 16)) -> np.ndarray:
    """Anchor centres [896, 2] in [0, 1] of the short-range model (MediaPipe SsdAnchorsCalculator, fixed size 1).

    Consecutive layers with the same stride share one grid; each layer adds two anchors per cell (aspect ratio 1
    plus the interpolated scale), so strides (8, 16, 16, 16) give 16*16*2 + 8*8*6 = 896 anchors.
    """
    centres = []
    layer = 0
    while layer < len(strides):
        stride = strides[layer]
        same = 0
        while layer < len(strides) and strides[layer] == stride:
            same += 1
            layer += 1
        cells = -(-size // stride)
        ys, xs = np.meshgrid(np.arange(cells), np.arange(cells), indexing="ij")
        grid = np.stack([(xs + 0.5) / cells, (ys + 0.5) / cells], axis=-1).reshape(-1, 1, 2)
        centres.append(np.repeat(grid, 2 * same, axis=1).reshape(-1, 2))
    return np.concatenate(centres).astype(np.float32)


def decode_blazeface(regressors: np.ndarray, logits: np.ndarray) -> dict[str, np.ndarray]:
    """Reference decoding in numpy (same maths as the graph) of raw outputs [N,896,16] and [N,896,1]."""
    anchors = blazeface_anchors() * DETECTOR_SIZE
    centre = regressors[..., 0:2] + anchors
    half = regressors[..., 2:4] / 2
    keypoints = regressors[..., 4:16].reshape(*regressors.shape[:-1], NUM_KEYPOINTS, 2) + anchors[:, None, :]
    scores = 1.0 / (1.0 + np.exp(-np.clip(logits[..., 0].astype(np.float64), -SCORE_CLIP, SCORE_CLIP)))
    return {"boxes": np.concatenate([centre - half, centre + half], -1), "keypoints": keypoints, "scores": scores}


class FaceDetectorHead(nn.Module):
    def __init__(self, network: TFLiteModule):
        super().__init__()
        self.network = network
        self.register_buffer("anchors", torch.from_numpy(blazeface_anchors() * DETECTOR_SIZE))

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = image.to(torch.float32) / 127.5 - 1.0
        regressors, logits = self.network(x)
        centre = regressors[..., 0:2] + self.anchors
        half = regressors[..., 2:4] / 2
        boxes = torch.cat([centre - half, centre + half], dim=-1)
        keypoints = regressors[..., 4:16].reshape(-1, NUM_ANCHORS, NUM_KEYPOINTS, 2) + self.anchors[:, None, :]
        scores = torch.sigmoid(torch.clamp(logits[..., 0], -SCORE_CLIP, SCORE_CLIP))
        return boxes, keypoints, scores


class FaceLandmarksHead(nn.Module):
    def __init__(self, network: TFLiteModule):
        super().__init__()
        self.network = network

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = image.to(torch.float32) / 255.0
        landmarks, presence = self.network(x)
        return landmarks.reshape(-1, NUM_LANDMARKS, 3), torch.sigmoid(presence.reshape(-1, 1))
