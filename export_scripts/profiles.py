"""Network hyper-parameters: ``full`` is the official LivePortrait configuration (src/config/models.yaml);
``tiny`` is the same architecture with reduced widths (and a thinner feature volume) for tests and the demo."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class AppearanceConfig:
    image_channel: int = 3
    block_expansion: int = 64
    num_down_blocks: int = 2
    max_features: int = 512
    reshape_channel: int = 32
    reshape_depth: int = 16
    num_resblocks: int = 6


@dataclass(frozen=True)
class MotionConfig:
    num_kp: int = 21
    backbone: str = "convnextv2_tiny"
    depths: tuple[int, ...] = (3, 3, 9, 3)
    dims: tuple[int, ...] = (96, 192, 384, 768)
    num_bins: int = 66


@dataclass(frozen=True)
class DenseMotionConfig:
    block_expansion: int = 32
    max_features: int = 1024
    num_blocks: int = 5
    reshape_depth: int = 16
    compress: int = 4


@dataclass(frozen=True)
class WarpingConfig:
    num_kp: int = 21
    block_expansion: int = 64
    max_features: int = 512
    num_down_blocks: int = 2
    reshape_channel: int = 32
    estimate_occlusion_map: bool = True
    dense_motion: DenseMotionConfig = field(default_factory=DenseMotionConfig)


@dataclass(frozen=True)
class SpadeConfig:
    upscale: int = 2
    block_expansion: int = 64
    max_features: int = 512
    num_down_blocks: int = 2
    out_channels: int = 64
    spade_hidden: int = 128


@dataclass(frozen=True)
class MLPConfig:
    input_size: int
    hidden_sizes: tuple[int, ...]
    output_size: int


@dataclass(frozen=True)
class RetargetingConfig:
    stitching: MLPConfig = MLPConfig(126, (128, 128, 64), 65)
    lip: MLPConfig = MLPConfig(65, (128, 128, 64), 63)
    eye: MLPConfig = MLPConfig(66, (256, 256, 128, 128, 64), 63)


@dataclass(frozen=True)
class Profile:
    name: str
    appearance: AppearanceConfig
    motion: MotionConfig
    warping: WarpingConfig
    spade: SpadeConfig
    retargeting: RetargetingConfig = RetargetingConfig()

    @property
    def feature_3d_dims(self) -> tuple[int, int, int, int]:
        side = 256 // (2**self.appearance.num_down_blocks)
        return (self.appearance.reshape_channel, self.appearance.reshape_depth, side, side)


FULL = Profile(
    name="full",
    appearance=AppearanceConfig(),
    motion=MotionConfig(),
    warping=WarpingConfig(),
    spade=SpadeConfig(),
)

# Same layer graph, narrower everywhere, for tests and the demo (~4 GFLOP per rendered frame instead of ~1,245).
# The dense-motion mask conv (7x7x7 over the whole feature volume) dominates the cost and scales with the volume, so
# the volume is 2 x 32 x 32 (one more downsampling in F) and the decoder upsamples 4x in its last layer to keep the
# 512x512 output of the model contract.
TINY = Profile(
    name="tiny",
    appearance=AppearanceConfig(block_expansion=8, num_down_blocks=3, max_features=16, reshape_channel=8,
                                reshape_depth=2, num_resblocks=1),
    motion=MotionConfig(depths=(1, 1, 2, 1), dims=(16, 32, 64, 128)),
    warping=WarpingConfig(
        block_expansion=8, max_features=16, reshape_channel=8,
        dense_motion=DenseMotionConfig(block_expansion=4, max_features=16, num_blocks=2, reshape_depth=2, compress=1),
    ),
    spade=SpadeConfig(upscale=4, block_expansion=8, max_features=32, out_channels=8, spade_hidden=16),
)

PROFILES = {p.name: p for p in (FULL, TINY)}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)}") from None
