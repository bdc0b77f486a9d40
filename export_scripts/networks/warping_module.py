"""Warping module W: dense motion from the source/driving keypoints, then the warped, projected feature map."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import Hourglass, SameBlock2d, coordinate_grid_3d, keypoint_gaussians
from .sampling import sample_volume

KEYPOINT_VARIANCE = 0.01


class DenseMotionNetwork(nn.Module):
    """Predicts a dense 3-D deformation (and an occlusion map) from sparse keypoint motion."""

    grid_sampler = "native"  # or "gather" (TensorRT-buildable); set with sampling.use_grid_sampler

    def __init__(self, block_expansion: int, num_blocks: int, max_features: int, num_kp: int, feature_channel: int,
                 reshape_depth: int, compress: int, estimate_occlusion_map: bool = True):
        super().__init__()
        self.num_kp = num_kp
        self.hourglass = Hourglass(block_expansion, (num_kp + 1) * (compress + 1), num_blocks, max_features)
        self.mask = nn.Conv3d(self.hourglass.out_filters, num_kp + 1, kernel_size=7, padding=3)
        self.compress = nn.Conv3d(feature_channel, compress, kernel_size=1)
        self.norm = nn.BatchNorm3d(compress, affine=True)
        self.occlusion = (
            nn.Conv2d(self.hourglass.out_filters * reshape_depth, 1, kernel_size=7, padding=3)
            if estimate_occlusion_map else None
        )

    def sparse_motions(self, grid: torch.Tensor, kp_driving: torch.Tensor, kp_source: torch.Tensor) -> torch.Tensor:
        """Identity plus one rigid shift per keypoint: [B, K+1, D, H, W, 3] sampling positions in the source."""
        b = kp_source.shape[0]
        shifted = grid[None, None] - kp_driving[:, :, None, None, None, :] + kp_source[:, :, None, None, None, :]
        identity = grid[None, None].expand(b, 1, *grid.shape)
        return torch.cat([identity, shifted], dim=1)

    def forward(self, feature: torch.Tensor, kp_driving: torch.Tensor, kp_source: torch.Tensor) -> dict[str, torch.Tensor]:
        b, _, d, h, w = feature.shape
        k1 = self.num_kp + 1
        feature = F.relu(self.norm(self.compress(feature)))
        grid = coordinate_grid_3d(d, h, w, like=kp_source)
        motions = self.sparse_motions(grid, kp_driving, kp_source)

        repeated = feature[:, None].expand(b, k1, *feature.shape[1:]).reshape(b * k1, -1, d, h, w)
        deformed = sample_volume(repeated, motions.reshape(b * k1, d, h, w, 3), self.grid_sampler)
        deformed = deformed.reshape(b, k1, -1, d, h, w)

        heatmap = keypoint_gaussians(kp_driving, grid, KEYPOINT_VARIANCE) - keypoint_gaussians(kp_source, grid, KEYPOINT_VARIANCE)
        heatmap = torch.cat([torch.zeros_like(heatmap[:, :1]), heatmap], dim=1)[:, :, None]

        prediction = self.hourglass(torch.cat([heatmap, deformed], dim=2).reshape(b, -1, d, h, w))
        mask = F.softmax(self.mask(prediction), dim=1)
        deformation = (motions.permute(0, 1, 5, 2, 3, 4) * mask[:, :, None]).sum(dim=1).permute(0, 2, 3, 4, 1)
        out = {"mask": mask, "deformation": deformation}
        if self.occlusion is not None:
            out["occlusion_map"] = torch.sigmoid(self.occlusion(prediction.reshape(b, -1, h, w)))
        return out


class WarpingNetwork(nn.Module):
    """(feature_3d, kp_driving, kp_source) -> warped 2-D feature map [B, block_expansion * 2**num_down_blocks, H, W]."""

    grid_sampler = "native"  # or "gather" (TensorRT-buildable); set with sampling.use_grid_sampler

    def __init__(self, num_kp: int, block_expansion: int, max_features: int, num_down_blocks: int,
                 reshape_channel: int, estimate_occlusion_map: bool = False, dense_motion_params: dict | None = None,
                 flag_use_occlusion_map: bool = True):
        super().__init__()
        if dense_motion_params is None:
            raise ValueError("the LivePortrait warping module needs dense_motion_params")
        self.flag_use_occlusion_map = flag_use_occlusion_map
        self.dense_motion_network = DenseMotionNetwork(
            num_kp=num_kp, feature_channel=reshape_channel, estimate_occlusion_map=estimate_occlusion_map,
            **dense_motion_params,
        )
        width = block_expansion * (2**num_down_blocks)
        self.third = SameBlock2d(max_features, width, kernel_size=(3, 3), padding=(1, 1), lrelu=True)
        self.fourth = nn.Conv2d(width, width, kernel_size=1, stride=1)

    def forward(self, feature_3d: torch.Tensor, kp_driving: torch.Tensor, kp_source: torch.Tensor) -> dict[str, torch.Tensor]:
        motion = self.dense_motion_network(feature_3d, kp_driving=kp_driving, kp_source=kp_source)
        out = sample_volume(feature_3d, motion["deformation"], self.grid_sampler)
        b, c, d, h, w = out.shape
        out = self.fourth(self.third(out.reshape(b, c * d, h, w)))
        occlusion = motion.get("occlusion_map")
        if self.flag_use_occlusion_map and occlusion is not None:
            out = out * occlusion
        return {"out": out, "occlusion_map": occlusion, "deformation": motion["deformation"], "mask": motion["mask"]}
