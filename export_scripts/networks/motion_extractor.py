"""Motion extractor M: a ConvNeXt-V2 backbone with heads for head pose bins, translation, expression, scale
and canonical keypoints."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ChannelsFirstLayerNorm(nn.Module):
    """LayerNorm over the channel axis of an NCHW tensor."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class GlobalResponseNorm(nn.Module):
    """ConvNeXt-V2 GRN on channels-last tensors."""

    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, 1, 1, dim))
        self.beta = nn.Parameter(torch.zeros(1, 1, 1, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gx = torch.norm(x, p=2, dim=(1, 2), keepdim=True)
        nx = gx / (gx.mean(dim=-1, keepdim=True) + 1e-6)
        return self.gamma * (x * nx) + self.beta + x


class ConvNeXtBlock(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.grn = GlobalResponseNorm(4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = self.pwconv2(self.grn(self.act(self.pwconv1(self.norm(y)))))
        return x + y.permute(0, 3, 1, 2)


class ConvNeXtV2Detector(nn.Module):
    """ConvNeXt-V2 trunk (stem + 3 downsamplings, 4 stages) and the LivePortrait motion heads."""

    def __init__(self, depths: tuple[int, ...], dims: tuple[int, ...], num_kp: int, num_bins: int, in_chans: int = 3):
        super().__init__()
        self.downsample_layers = nn.ModuleList()
        self.downsample_layers.append(
            nn.Sequential(nn.Conv2d(in_chans, dims[0], kernel_size=4, stride=4), ChannelsFirstLayerNorm(dims[0]))
        )
        for i in range(3):
            self.downsample_layers.append(
                nn.Sequential(ChannelsFirstLayerNorm(dims[i]), nn.Conv2d(dims[i], dims[i + 1], kernel_size=2, stride=2))
            )
        self.stages = nn.ModuleList(nn.Sequential(*[ConvNeXtBlock(dims[i]) for _ in range(depths[i])]) for i in range(4))
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        self.fc_kp = nn.Linear(dims[-1], 3 * num_kp)
        self.fc_scale = nn.Linear(dims[-1], 1)
        self.fc_pitch = nn.Linear(dims[-1], num_bins)
        self.fc_yaw = nn.Linear(dims[-1], num_bins)
        self.fc_roll = nn.Linear(dims[-1], num_bins)
        self.fc_t = nn.Linear(dims[-1], 3)
        self.fc_exp = nn.Linear(dims[-1], 3 * num_kp)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        for down, stage in zip(self.downsample_layers, self.stages):
            x = stage(down(x))
        x = self.norm(x.mean([-2, -1]))
        return {
            "pitch": self.fc_pitch(x), "yaw": self.fc_yaw(x), "roll": self.fc_roll(x),
            "t": self.fc_t(x), "exp": self.fc_exp(x), "scale": self.fc_scale(x), "kp": self.fc_kp(x),
        }


def bins_to_degrees(logits: torch.Tensor) -> torch.Tensor:
    """Expected angle of the 66 pose bins (3 degrees each, centred as the official code: * 3 - 97.5)."""
    idx = torch.arange(logits.shape[1], dtype=logits.dtype, device=logits.device)
    return (F.softmax(logits, dim=1) * idx).sum(dim=1) * 3 - 97.5


class MotionExtractor(nn.Module):
    """[B, 3, 256, 256] in [0, 1] -> raw head outputs (pose bins, t, exp, scale, kp)."""

    def __init__(self, num_kp: int = 21, backbone: str = "convnextv2_tiny", depths: tuple[int, ...] = (3, 3, 9, 3),
                 dims: tuple[int, ...] = (96, 192, 384, 768), num_bins: int = 66):
        super().__init__()
        if backbone != "convnextv2_tiny":
            raise ValueError(f"unsupported motion extractor backbone {backbone!r}")
        self.num_kp = num_kp
        self.detector = ConvNeXtV2Detector(tuple(depths), tuple(dims), num_kp, num_bins)

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.detector(image)

    def kp_info(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """What the official ``get_kp_info`` returns: angles in degrees [B, 1], kp and exp as [B, num_kp, 3]."""
        return self.kp_info_of(self.detector(image))

    @staticmethod
    def kp_info_of(raw: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``kp_info`` of the raw head outputs."""
        b = raw["kp"].shape[0]
        return {
            "pitch": bins_to_degrees(raw["pitch"])[:, None],
            "yaw": bins_to_degrees(raw["yaw"])[:, None],
            "roll": bins_to_degrees(raw["roll"])[:, None],
            "t": raw["t"],
            "exp": raw["exp"].reshape(b, -1, 3),
            "scale": raw["scale"],
            "kp": raw["kp"].reshape(b, -1, 3),
        }
