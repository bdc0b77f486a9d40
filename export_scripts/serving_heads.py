"""The modules exported to ONNX: each wraps networks into exactly one served model of the model contract.

| model                        | inputs                                   | outputs                                    |
|------------------------------|------------------------------------------|--------------------------------------------|
| appearance_feature_extractor | image [3,256,256] in [0,1]               | feature_3d [C,D,64,64]                     |
| motion_extractor             | image [3,256,256]                        | pitch, yaw, roll [1] (deg), t [3],         |
|                              |                                          | exp [21,3], scale [1], kp [21,3],          |
|                              |                                          | pitch_bins, yaw_bins, roll_bins [66]       |
| stitching                    | kp_source, kp_driving [21,3]             | kp_driving_stitched [21,3]                 |
| retarget_eye                 | kp_source [21,3], eye_ratio [3]          | delta [21,3]                               |
| retarget_lip                 | kp_source [21,3], lip_ratio [2]          | delta [21,3]                               |
| warping_spade                | feature_3d, kp_source, kp_driving        | image [3,512,512] in [0,1]                 |
| preprocess_image             | image_u8 [256,256,3] uint8 RGB           | image [3,256,256] in [0,1]                 |
| postprocess_image            | image [3,512,512]                        | image_u8 [512,512,3] uint8                 |
| postprocess_image_i420       | image [3,512,512]                        | image_i420 [768,512] uint8 (planar 4:2:0)  |
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from .build import LivePortraitNetworks
from .networks import (AppearanceFeatureExtractor, MotionExtractor, SPADEDecoder, StitchingRetargetingNetwork,
                       WarpingNetwork)
from .networks.sampling import use_grid_sampler

MOTION_OUTPUTS = ("pitch", "yaw", "roll", "t", "exp", "scale", "kp")
POSE_BINS = ("pitch_bins", "yaw_bins", "roll_bins")  # the raw 66-bin logits the degrees come from (audio motion)


class AppearanceHead(nn.Module):
    def __init__(self, appearance: AppearanceFeatureExtractor):
        super().__init__()
        self.appearance = appearance

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.appearance(image)


class MotionHead(nn.Module):
    def __init__(self, motion: MotionExtractor):
        super().__init__()
        self.motion = motion

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        raw = self.motion(image)
        info = self.motion.kp_info_of(raw)
        return (*(info[name] for name in MOTION_OUTPUTS), raw["pitch"], raw["yaw"], raw["roll"])


class StitchingHead(nn.Module):
    """The official ``stitching()``: the MLP's 63 keypoint offsets plus a shared (tx, ty) added to kp_driving."""

    def __init__(self, mlp: StitchingRetargetingNetwork):
        super().__init__()
        self.mlp = mlp

    def forward(self, kp_source: torch.Tensor, kp_driving: torch.Tensor) -> torch.Tensor:
        b, k, _ = kp_source.shape
        delta = self.mlp(torch.cat([kp_source.reshape(b, -1), kp_driving.reshape(b, -1)], dim=1))
        offsets = delta[:, : 3 * k].reshape(b, k, 3)
        shift = torch.cat([delta[:, 3 * k: 3 * k + 2], torch.zeros_like(delta[:, :1])], dim=1)
        return kp_driving + offsets + shift[:, None, :]


class RetargetHead(nn.Module):
    """Eye or lip retargeting: (kp_source, ratio) -> keypoint delta [B, K, 3]."""

    def __init__(self, mlp: StitchingRetargetingNetwork):
        super().__init__()
        self.mlp = mlp

    def forward(self, kp_source: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
        b, k, _ = kp_source.shape
        return self.mlp(torch.cat([kp_source.reshape(b, -1), ratio], dim=1)).reshape(b, k, 3)


class WarpingSpadeHead(nn.Module):
    def __init__(self, warping: WarpingNetwork, spade: SPADEDecoder):
        super().__init__()
        self.warping = warping
        self.spade = spade

    def forward(self, feature_3d: torch.Tensor, kp_source: torch.Tensor, kp_driving: torch.Tensor) -> torch.Tensor:
        warped = self.warping(feature_3d, kp_driving=kp_driving, kp_source=kp_source)["out"]
        return self.spade(warped)


class PreprocessImage(nn.Module):
    """uint8 HWC RGB -> float CHW in [0, 1], as the official ``prepare_source``."""

    def forward(self, image_u8: torch.Tensor) -> torch.Tensor:
        return image_u8.permute(0, 3, 1, 2).to(torch.float32) / 255.0


class PostprocessImage(nn.Module):
    """float CHW -> uint8 HWC, as the official ``parse_output`` (clip to [0, 1], x255, truncate)."""

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        scaled = torch.floor(torch.clamp(image, 0.0, 1.0) * 255.0)
        return scaled.permute(0, 2, 3, 1).to(torch.uint8)


class PostprocessImageI420(nn.Module):
    """float CHW -> planar YUV 4:2:0 uint8 [768, 512] (Y 512x512, then U and V 256x256 each, as OpenCV's I420).

    The RGB levels are those of ``PostprocessImage``; YUV is BT.601 limited range (what OpenCV's
    COLOR_YUV2RGB_I420 inverts), chroma is the mean of each 2x2 block. Half the bytes of RGB on the wire; the video
    is encoded as yuv420p anyway.
    """

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        rgb = torch.floor(torch.clamp(image, 0.0, 1.0) * 255.0)
        r, g, b = rgb[:, 0], rgb[:, 1], rgb[:, 2]
        y = 16.0 + 0.256788 * r + 0.504129 * g + 0.097906 * b
        pooled = torch.nn.functional.avg_pool2d(rgb, kernel_size=2)
        pr, pg, pb = pooled[:, 0], pooled[:, 1], pooled[:, 2]
        u = 128.0 - 0.148223 * pr - 0.290993 * pg + 0.439216 * pb
        v = 128.0 + 0.439216 * pr - 0.367788 * pg - 0.071427 * pb
        batch, height, width = y.shape
        chroma = torch.cat([u, v], dim=1).reshape(batch, height // 2, width)
        planes = torch.cat([y, chroma], dim=1)
        return torch.clamp(torch.round(planes), 0.0, 255.0).to(torch.uint8)


def serving_modules(networks: LivePortraitNetworks, grid_sampler: str = "native") -> dict[str, nn.Module]:
    """Every served model of the contract as a module over ``networks`` (eval mode). ``grid_sampler="gather"``
    makes ``warping_spade`` sample its feature volumes with gathers instead of 5-D GridSample nodes (same values; a
    graph stock TensorRT builds as one engine); it is set on a copy of the warping module, so ``networks`` is left as
    it is."""
    warping = networks.warping_module
    if grid_sampler != warping.grid_sampler:
        warping = use_grid_sampler(copy.deepcopy(warping), grid_sampler)
    modules = {
        "appearance_feature_extractor": AppearanceHead(networks.appearance_feature_extractor),
        "motion_extractor": MotionHead(networks.motion_extractor),
        "stitching": StitchingHead(networks.stitching),
        "retarget_eye": RetargetHead(networks.eye),
        "retarget_lip": RetargetHead(networks.lip),
        "warping_spade": WarpingSpadeHead(warping, networks.spade_generator),
        "preprocess_image": PreprocessImage(),
        "postprocess_image": PostprocessImage(),
        "postprocess_image_i420": PostprocessImageI420(),
    }
    return {name: module.eval() for name, module in modules.items()}
