"""LivePortrait networks in PyTorch, state-dict compatible with the official checkpoints.

One file per network; shared building blocks live in ``blocks.py``.
"""
from .appearance_feature_extractor import AppearanceFeatureExtractor
from .motion_extractor import MotionExtractor
from .spade_generator import SPADEDecoder
from .stitching_retargeting import StitchingRetargetingNetwork
from .warping_module import WarpingNetwork

__all__ = [
    "AppearanceFeatureExtractor",
    "MotionExtractor",
    "SPADEDecoder",
    "StitchingRetargetingNetwork",
    "WarpingNetwork",
]
