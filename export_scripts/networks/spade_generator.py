"""SPADE generator G: warped feature map -> RGB image (2x the feature resolution x 2**upsamplings)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import SPADEResnetBlock

NUM_MIDDLE_BLOCKS = 6


class SPADEDecoder(nn.Module):
    """[B, C, 64, 64] -> [B, 3, 512, 512] in [0, 1] with the official sizes (upscale 2).

    ``spade_hidden`` (128 in the official network) is the width of the SPADE modulation convs; the tiny profile
    reduces it.
    """

    def __init__(self, upscale: int = 1, max_features: int = 256, block_expansion: int = 64, out_channels: int = 64,
                 num_down_blocks: int = 2, spade_hidden: int = 128):
        super().__init__()
        channels = min(max_features, block_expansion * (2**num_down_blocks))
        self.upscale = upscale
        self.fc = nn.Conv2d(channels, 2 * channels, 3, padding=1)
        for i in range(NUM_MIDDLE_BLOCKS):
            self.add_module(f"G_middle_{i}", SPADEResnetBlock(2 * channels, 2 * channels, channels, spade_hidden))
        self.up_0 = SPADEResnetBlock(2 * channels, channels, channels, spade_hidden)
        self.up_1 = SPADEResnetBlock(channels, out_channels, channels, spade_hidden)
        self.up = nn.Upsample(scale_factor=2)
        if upscale is None or upscale <= 1:
            self.conv_img = nn.Conv2d(out_channels, 3, 3, padding=1)
        else:
            self.conv_img = nn.Sequential(
                nn.Conv2d(out_channels, 3 * upscale * upscale, kernel_size=3, padding=1),
                nn.PixelShuffle(upscale_factor=upscale),
            )

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        x = self.fc(feature)
        for i in range(NUM_MIDDLE_BLOCKS):
            x = getattr(self, f"G_middle_{i}")(x, feature)
        x = self.up_0(self.up(x), feature)
        x = self.up_1(self.up(x), feature)
        return torch.sigmoid(self.conv_img(F.leaky_relu(x, 0.2)))
