"""LivePortrait's crop geometry (``src/utils/crop.py``), re-implemented: crop transform, warps and paste-back.

The transform rotates the image so the eye-centre -> mouth-centre axis is vertical, takes a square whose side is the
largest landmark extent in that rotated frame times ``scale``, shifts its centre by ``vy_ratio`` times the side along
the face axis (negative: up), and maps it onto a ``dsize`` x ``dsize`` crop. Coordinates are OpenCV pixel coordinates.
All arithmetic is float32 like the official code, so the matrices agree with it to float rounding.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

F32 = np.float32


@dataclass(frozen=True)
class CropConfig:
    """Official defaults for a source image (``CropConfig`` / ``ArgumentConfig``)."""

    dsize: int = 512
    scale: float = 2.3
    vx_ratio: float = 0.0  # the official source crop ignores it (it is never forwarded); kept for the same reason
    vy_ratio: float = -0.125
    rotate: bool = True


DRIVING_CROP = CropConfig(scale=2.2, vy_ratio=-0.1, rotate=False)


@dataclass(frozen=True)
class CropRect:
    center: np.ndarray  # (2,) float32, image pixels
    size: float  # side of the square, image pixels (already multiplied by scale)
    angle: float  # radians; rotation of the face's x axis in the image (clockwise positive, image coordinates)


@dataclass(frozen=True)
class CropTransform:
    M_o2c: np.ndarray  # 3x3 float32, original image -> crop
    M_c2o: np.ndarray  # 3x3 float32, crop -> original image
    dsize: int


def anchor_points(points: np.ndarray) -> np.ndarray:
    """[eye centre, mouth centre] (2x2) from an official landmark layout: 106 (InsightFace), 203, 68 (iBUG) or 5.

    Unlike the official ``parse_pt2_from_pt_x``, an unknown point count is an error, never silently misread.
    """
    pts = np.asarray(points, F32)
    n = pts.shape[0]
    if n == 106:
        left, right = pts[[33, 35, 40, 39]].mean(0), pts[[87, 89, 94, 93]].mean(0)
        mouth = (pts[52] + pts[61]) / 2
    elif n == 203:
        left, right = pts[[0, 6, 12, 18]].mean(0), pts[[24, 30, 36, 42]].mean(0)
        mouth = (pts[48] + pts[66]) / 2
    elif n == 68:
        left, right = pts[[36, 39]].mean(0), pts[[42, 45]].mean(0)
        mouth = (pts[48] + pts[54]) / 2
    elif n == 5:
        left, right, mouth = pts[0], pts[1], (pts[3] + pts[4]) / 2
    else:
        raise ValueError(f"no known landmark layout has {n} points (expected 106, 203, 68 or 5)")
    return np.stack([(left + right) / 2, mouth]).astype(F32)


def crop_rect(points: np.ndarray, scale: float, vx_ratio: float = 0.0, vy_ratio: float = 0.0,
              anchors: np.ndarray | None = None) -> CropRect:
    """Official ``parse_rect_from_landmark`` (square, with lip): centre, side and angle of the rotated crop square."""
    pts = np.asarray(points, F32)
    pt2 = anchor_points(pts) if anchors is None else np.asarray(anchors, F32)
    uy = pt2[1] - pt2[0]
    length = np.linalg.norm(uy)
    uy = np.array([0, 1], F32) if length <= 1e-3 else uy / length
    ux = np.array((uy[1], -uy[0]), F32)
    angle = math.acos(float(ux[0]))
    if ux[1] < 0:
        angle = -angle
    rotation = np.array([ux, uy])
    center0 = pts.mean(axis=0)
    rotated = (pts - center0) @ rotation.T
    low, high = rotated.min(axis=0), rotated.max(axis=0)
    mid = (low + high) / 2
    side = F32(max((high - low)[0], (high - low)[1])) * F32(scale)
    center = center0 + ux * mid[0] + uy * mid[1]
    center = center + ux * (vx_ratio * side) + uy * (vy_ratio * side)
    return CropRect(center.astype(F32), float(side), angle)


def crop_transform_from_rect(rect: CropRect, dsize: int, rotate: bool = True) -> CropTransform:
    s = F32(dsize) / F32(rect.size)
    half = dsize / 2
    cx, cy = rect.center
    if rotate:
        c, si = math.cos(rect.angle), math.sin(rect.angle)
        m = np.array([[s * c, s * si, half - s * (c * cx + si * cy)],
                      [-s * si, s * c, half - s * (-si * cx + c * cy)]], F32)
    else:
        m = np.array([[s, 0, half - s * cx], [0, s, half - s * cy]], F32)
    o2c = np.vstack([m, np.array([0, 0, 1], F32)])
    return CropTransform(o2c, np.linalg.inv(o2c), dsize)


def crop_transform(points: np.ndarray, config: CropConfig = CropConfig(),
                   anchors: np.ndarray | None = None) -> CropTransform:
    """The official source crop (``crop_image``): landmarks -> M_o2c / M_c2o for a ``dsize`` square crop."""
    rect = crop_rect(points, config.scale, config.vx_ratio, config.vy_ratio, anchors)
    return crop_transform_from_rect(rect, config.dsize, config.rotate)


def square_box(rect: CropRect) -> np.ndarray:
    """Axis-aligned [x1, y1, x2, y2] of the (unrotated) square of ``rect``, as the official driving crop uses it."""
    cx, cy = (float(v) for v in rect.center)
    h = rect.size / 2
    return np.array([cx - h, cy - h, cx + h, cy + h], np.float64)


def box_transform(box: np.ndarray, dsize: int) -> CropTransform:
    """Official ``crop_image_by_bbox`` without rotation: an axis-aligned square box -> ``dsize`` crop."""
    x1, y1, x2, y2 = (float(v) for v in box)
    s = F32(dsize / (x2 - x1))
    m = np.array([[s, 0, dsize / 2 - s * (x1 + x2) / 2], [0, s, dsize / 2 - s * (y1 + y2) / 2]], F32)
    o2c = np.vstack([m, np.array([0, 0, 1], F32)])
    return CropTransform(o2c, np.linalg.inv(o2c), dsize)


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    pts = np.asarray(points)
    return pts[..., :2] @ matrix[:2, :2].T + matrix[:2, 2]


def warp_crop(image: np.ndarray, transform: CropTransform) -> np.ndarray:
    """The crop itself: bilinear warp with a black border (official ``_transform_img``)."""
    return cv2.warpAffine(image, transform.M_o2c[:2], (transform.dsize, transform.dsize), flags=cv2.INTER_LINEAR)


def resize_crop(crop: np.ndarray, size: int = 256) -> np.ndarray:
    """The network input: the 512 crop downsized with INTER_AREA, as ``Cropper.crop_source_image`` does."""
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)


def paste_back_mask(mask_crop: np.ndarray, M_c2o: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
    """Official ``prepare_paste_back``: the crop-space mask warped into the image, float32 in [0, 1]."""
    h, w = image_hw
    warped = cv2.warpAffine(mask_crop, M_c2o[:2], (w, h), flags=cv2.INTER_LINEAR)
    return warped.astype(np.float32) / 255.0


def paste_back(crop: np.ndarray, M_c2o: np.ndarray, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Official ``paste_back``: warp the animated crop into the image and blend it with the mask."""
    h, w = image.shape[:2]
    warped = cv2.warpAffine(crop, M_c2o[:2], (w, h), flags=cv2.INTER_LINEAR)
    return np.clip(mask * warped + (1 - mask) * image, 0, 255).astype(np.uint8)
