"""Render: driving keypoints -> 512x512 crops (Triton ``render_i420``, planar YUV 4:2:0)."""
from __future__ import annotations

import cv2
import numpy as np

from ..triton_client import RequestRunner
from .paste import PasteBack

F32 = np.float32


async def render(runner: RequestRunner, crop_256: np.ndarray, x_s: np.ndarray, kp_driving: np.ndarray) -> np.ndarray:
    """The 512x512 crops of a chunk as planar YUV 4:2:0 ([n, 768, 512] uint8), one ``render_i420`` call.

    Half the bytes of RGB (~0.59 MB per frame with the source crop going in); the video is encoded as yuv420p anyway.
    """
    n = len(kp_driving)
    outputs = await runner.infer("render_i420", {
        "source_u8": np.broadcast_to(crop_256, (n, 256, 256, 3)),
        "kp_source": np.broadcast_to(x_s, (n, 21, 3)).astype(F32),
        "kp_driving": kp_driving.astype(F32, copy=False),
    })
    return outputs["image_i420"]


async def render_faces(runner: RequestRunner, crops_256: list[np.ndarray], x_s: list[np.ndarray],
                       kp_driving: list[np.ndarray]) -> list[np.ndarray]:
    """Several faces' crops of the same n frames in one ``render_i420`` call (the faces of a frame go to the render
    model together: face after face along the batch axis, n frames each); the planes of each face. One face: the
    same call as ``render``."""
    if len(crops_256) == 1:
        return [await render(runner, crops_256[0], x_s[0], kp_driving[0])]
    n = len(kp_driving[0])
    outputs = await runner.infer("render_i420", {
        "source_u8": np.concatenate([np.broadcast_to(c, (n, 256, 256, 3)) for c in crops_256]),
        "kp_source": np.concatenate([np.broadcast_to(x, (n, 21, 3)) for x in x_s]).astype(F32),
        "kp_driving": np.concatenate(kp_driving).astype(F32, copy=False),
    })
    planes = outputs["image_i420"]
    return [planes[i * n:(i + 1) * n] for i in range(len(crops_256))]


def output_frames(planes: np.ndarray, paste: PasteBack | None) -> list[np.ndarray]:
    """The frames of a rendered chunk in RGB, pasted back into the source when pasting: the RGB path (images,
    live frames, checks); videos are pasted back in I420 (``yuv_paste.I420Canvas``)."""
    crops = [cv2.cvtColor(p, cv2.COLOR_YUV2RGB_I420) for p in planes]
    return [paste(c) for c in crops] if paste else crops
