"""Appearance feature extractor F: source image -> 3-D appearance feature volume."""
from __future__ import annotations

import torch
from torch import nn

from .blocks import DownBlock2d, ResBlock3d, SameBlock2d


class AppearanceFeatureExtractor(nn.Module):
    """[B, 3, H, W] in [0, 1] -> [B, reshape_channel, reshape_depth, H / 2**num_down_blocks, W / 2**num_down_blocks]."""

    def __init__(self, image_channel: int, block_expansion: int, num_down_blocks: int, max_features: int,
                 reshape_channel: int, reshape_depth: int, num_resblocks: int):
        super().__init__()
        if reshape_channel * reshape_depth != max_features:
            raise ValueError("reshape_channel * reshape_depth must equal max_features")
        self.reshape_channel = reshape_channel
        self.reshape_depth = reshape_depth
        self.first = SameBlock2d(image_channel, block_expansion, kernel_size=(3, 3), padding=(1, 1))
        widths = [min(max_features, block_expansion * (2**i)) for i in range(num_down_blocks + 1)]
        self.down_blocks = nn.ModuleList(
            DownBlock2d(widths[i], widths[i + 1], kernel_size=(3, 3), padding=(1, 1)) for i in range(num_down_blocks)
        )
        self.second = nn.Conv2d(widths[-1], max_features, kernel_size=1, stride=1)
        self.resblocks_3d = nn.Sequential()
        for i in range(num_resblocks):
            self.resblocks_3d.add_module(f"3dr{i}", ResBlock3d(reshape_channel, kernel_size=3, padding=1))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        out = self.first(image)
        for block in self.down_blocks:
            out = block(out)
        out = self.second(out)
        b, _, h, w = out.shape
        return self.resblocks_3d(out.view(b, self.reshape_channel, self.reshape_depth, h, w))
