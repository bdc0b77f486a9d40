"""Stitching and eye/lip retargeting MLPs S."""
from __future__ import annotations

import torch
from torch import nn


class StitchingRetargetingNetwork(nn.Module):
    """Linear layers with ReLU between them (none after the last); keys ``mlp.0``, ``mlp.2``, ..."""

    def __init__(self, input_size: int, hidden_sizes: list[int], output_size: int):
        super().__init__()
        sizes = [input_size, *hidden_sizes]
        layers: list[nn.Module] = []
        for fin, fout in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(fin, fout), nn.ReLU()]
        layers.append(nn.Linear(sizes[-1], output_size))
        self.mlp = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x)
