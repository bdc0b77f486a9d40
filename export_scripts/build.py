"""Construct the networks of a profile (random initial weights; load a checkpoint or synthetic weights next)."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from torch import nn

from .networks import (AppearanceFeatureExtractor, MotionExtractor, SPADEDecoder, StitchingRetargetingNetwork,
                       WarpingNetwork)
from .profiles import MLPConfig, Profile

BASE_NETWORKS = ("appearance_feature_extractor", "motion_extractor", "warping_module", "spade_generator")
RETARGETING_PARTS = ("stitching", "lip", "eye")


@dataclass
class LivePortraitNetworks:
    """The five official networks (the retargeting file holds three MLPs)."""

    appearance_feature_extractor: AppearanceFeatureExtractor
    motion_extractor: MotionExtractor
    warping_module: WarpingNetwork
    spade_generator: SPADEDecoder
    stitching: StitchingRetargetingNetwork
    lip: StitchingRetargetingNetwork
    eye: StitchingRetargetingNetwork

    def modules(self) -> dict[str, nn.Module]:
        return {name: getattr(self, name) for name in (*BASE_NETWORKS, *RETARGETING_PARTS)}

    def eval(self) -> "LivePortraitNetworks":
        for module in self.modules().values():
            module.eval().requires_grad_(False)
        return self


def _mlp(cfg: MLPConfig) -> StitchingRetargetingNetwork:
    return StitchingRetargetingNetwork(cfg.input_size, list(cfg.hidden_sizes), cfg.output_size)


def build_networks(profile: Profile) -> LivePortraitNetworks:
    warping = asdict(profile.warping)
    warping["dense_motion_params"] = warping.pop("dense_motion")
    return LivePortraitNetworks(
        appearance_feature_extractor=AppearanceFeatureExtractor(**asdict(profile.appearance)),
        motion_extractor=MotionExtractor(**asdict(profile.motion)),
        warping_module=WarpingNetwork(**warping),
        spade_generator=SPADEDecoder(**asdict(profile.spade)),
        stitching=_mlp(profile.retargeting.stitching),
        lip=_mlp(profile.retargeting.lip),
        eye=_mlp(profile.retargeting.eye),
    ).eval()
