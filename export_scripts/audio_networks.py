"""The audio-to-motion networks (HuBERT audio encoder, LMDM denoiser): profiles, synthetic weights, checkpoints.

Profiles: ``full`` is the official configuration (HuBERT-large, the 47.8 M-parameter LMDM); ``tiny`` the same code
with reduced widths and layers, for tests and the demo. The window length (80 frames), the motion (265) and
condition (1103) widths and the audio feature width (1024, the width of the conditions) are fixed by the pipeline,
so ``tiny`` keeps them.

Synthetic weights follow the rule the audio golden vectors were computed with (``audio_golden_<X>/README.md``):
``torch.manual_seed(seed)``, then over ``named_parameters()`` in order: the weight of a LayerNorm/GroupNorm/BatchNorm
``~ 1 + N(0, 0.02)``, every other parameter (biases included) ``~ N(0, 0.02)``; buffers keep their constructed
values. Official LMDM checkpoints are ``{"model_state_dict": <MotionDecoder state dict>}``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .checkpoints import CheckpointError, load_state_strict, read_checkpoint
from .networks.hubert import HubertConfig, HubertModel
from .networks.lmdm import LMDMConfig, MotionDecoder


@dataclass(frozen=True)
class AudioProfile:
    name: str
    hubert: HubertConfig
    lmdm: LMDMConfig


FULL = AudioProfile("full", HubertConfig(), LMDMConfig())
TINY = AudioProfile(
    "tiny",
    HubertConfig(num_hidden_layers=1, num_attention_heads=4, intermediate_size=256,
                 conv_dim=(32, 32, 32, 32, 32, 32, 32), num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=16),
    LMDMConfig(latent_dim=64, ff_size=128, num_layers=2, num_heads=4),
)
AUDIO_PROFILES = {p.name: p for p in (FULL, TINY)}


def get_audio_profile(name: str) -> AudioProfile:
    try:
        return AUDIO_PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown audio profile {name!r}; choose one of {sorted(AUDIO_PROFILES)}") from None


NORMS = (nn.LayerNorm, nn.GroupNorm, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


@torch.no_grad()
def seeded_init_(module: nn.Module, seed: int) -> nn.Module:
    """The golden's weight rule, in place (see the module docstring)."""
    norm_weights = {id(m.weight) for m in module.modules() if isinstance(m, NORMS) and m.weight is not None}
    torch.manual_seed(seed)
    for _, parameter in module.named_parameters():
        parameter.normal_(0.0, 0.02)
        if id(parameter) in norm_weights:
            parameter.add_(1.0)
    return module


def synthetic_hubert(profile: AudioProfile, seed: int) -> HubertModel:
    """The audio encoder of ``profile`` with synthetic weights of ``seed`` (eval mode, no gradients)."""
    return seeded_init_(HubertModel(profile.hubert), seed).eval().requires_grad_(False)


def synthetic_lmdm(profile: AudioProfile, seed: int) -> MotionDecoder:
    """The LMDM denoiser of ``profile`` with synthetic weights of ``seed`` (eval mode, no gradients)."""
    return seeded_init_(MotionDecoder(profile.lmdm), seed).eval().requires_grad_(False)


def write_lmdm_checkpoint(model: MotionDecoder, path: Path) -> None:
    """Save in the official layout of ``lmdm_v0.4_hubert.pth``."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model_state_dict": model.state_dict()}, path)


def load_lmdm_checkpoint(path: Path, profile: AudioProfile = FULL) -> MotionDecoder:
    """An official (or official-layout) LMDM checkpoint, loaded strictly (eval mode, no gradients)."""
    saved = read_checkpoint(Path(path))
    if not isinstance(saved, dict) or "model_state_dict" not in saved:
        found = sorted(saved) if isinstance(saved, dict) else type(saved).__name__
        raise CheckpointError(f"{path}: expected {{'model_state_dict': ...}} (found {found})")
    model = MotionDecoder(profile.lmdm)
    load_state_strict(model, saved["model_state_dict"], str(path))
    return model.eval().requires_grad_(False)


def torch_encoder(model: HubertModel):
    """``features.Encoder`` running the PyTorch audio encoder in-process: (B, 6480) -> (B, 20, hidden)."""

    def encode(windows):
        with torch.no_grad():
            return model(torch.from_numpy(windows)).numpy()

    return encode


def torch_denoiser(model: MotionDecoder):
    """``sampler.Denoiser`` running the PyTorch LMDM in-process (the two passes as one batch of two)."""

    def denoise(x, kp_cond, cond, t):
        with torch.no_grad():
            uncond, conditioned = model.forward_pair(torch.from_numpy(x), torch.from_numpy(kp_cond),
                                                     torch.from_numpy(cond), torch.from_numpy(t))
        return uncond.numpy(), conditioned.numpy()

    return denoise
