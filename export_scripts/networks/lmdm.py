"""Ditto's LMDM motion decoder: the denoiser of the audio-to-motion diffusion (``core/models/modules/LMDM.py`` and
``lmdm_modules/model.py`` of antgroup/ditto-talkinghead; state-dict compatible with ``lmdm_v0.4_hubert.pth``, whose
``model_state_dict`` loads strictly).

Per window of ``seq_len`` frames it predicts the clean motion ``x0`` (seq_len, nfeats) from the noisy motion ``x``,
the window's first-frame motion ``cond_frame`` (nfeats), the per-frame conditions ``cond`` (seq_len, cond_dim) and
the diffusion step ``t``:

* ``x`` and ``cond_frame`` (repeated per frame) are concatenated and projected to the latent width;
* the conditions are projected and encoded by two pre-norm transformer encoder layers; where a batch entry is
  unconditional (``keep`` false) its tokens are replaced by the learned null tokens, and its pooled condition by
  the learned null vector;
* the step's sinusoidal embedding gives a FiLM vector (plus the pooled condition) and two extra memory tokens;
* pre-norm FiLM transformer decoder layers (self-attention, cross-attention to the memory, feed-forward, each
  modulated by the FiLM vector), then a linear head.

Self- and cross-attention rotate queries and keys (not values) with one rotary position embedding over the whole
latent width, shared by every layer (its ``freqs`` buffer appears under each layer's name in the state dict).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class LMDMConfig:
    """``full`` = the official ``LMDM(motion_feat_dim=265, audio_feat_dim=1103, seq_frames=80)``."""

    motion_dim: int = 265
    cond_dim: int = 1103
    seq_len: int = 80
    latent_dim: int = 512
    ff_size: int = 1024
    num_layers: int = 8
    num_heads: int = 8


class RotaryEmbedding(nn.Module):
    """Rotary positions over the last axis: pairs (2i, 2i+1) rotate by ``position * theta^(-2i/dim)``."""

    def __init__(self, dim: int, theta: float = 10000.0):
        super().__init__()
        self.register_buffer("freqs", 1.0 / (theta ** (torch.arange(0, dim, 2)[: dim // 2].float() / dim)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(x.shape[-2], device=x.device, dtype=self.freqs.dtype)
        angles = (positions[:, None] * self.freqs[None, :]).to(x.dtype)
        cos, sin = angles.cos(), angles.sin()
        even, odd = x[..., 0::2], x[..., 1::2]
        return torch.stack((even * cos - odd * sin, odd * cos + even * sin), dim=-1).flatten(-2)


class SinusoidalStepEmbedding(nn.Module):
    """The diffusion step as ``[sin(t w_i), cos(t w_i)]``, ``w_i = 10000^(-i / (dim/2 - 1))``."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.dim // 2
        w = torch.exp(torch.arange(half, device=t.device) * -(math.log(10000) / (half - 1)))
        angles = t[:, None] * w[None, :]
        return torch.cat((angles.sin(), angles.cos()), dim=-1)


class SplitTokens(nn.Module):
    """(B, r*d) -> (B, r, d)."""

    def __init__(self, tokens: int):
        super().__init__()
        self.tokens = tokens

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.tokens, -1))


class DenseFiLM(nn.Module):
    """Mish then a linear layer: a per-channel (scale, shift) pair from the conditioning vector."""

    def __init__(self, dim: int):
        super().__init__()
        self.block = nn.Sequential(nn.Mish(), nn.Linear(dim, dim * 2))

    def forward(self, vector: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scale, shift = self.block(vector)[:, None, :].chunk(2, dim=-1)
        return scale, shift


def film(x: torch.Tensor, scale_shift: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    scale, shift = scale_shift
    return (scale + 1) * x + shift


class EncoderLayer(nn.Module):
    """Pre-norm transformer encoder layer with rotary queries/keys and GELU."""

    def __init__(self, dim: int, heads: int, ff_size: int, rotary: RotaryEmbedding):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.linear1 = nn.Linear(dim, ff_size)
        self.linear2 = nn.Linear(ff_size, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.rotary = rotary

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        qk = self.rotary(h)
        x = x + self.self_attn(qk, qk, h, need_weights=False)[0]
        return x + self.linear2(F.gelu(self.linear1(self.norm2(x))))


class FiLMDecoderLayer(nn.Module):
    """Pre-norm decoder layer: self-attention, cross-attention, feed-forward, each FiLM-modulated by ``t``."""

    def __init__(self, dim: int, heads: int, ff_size: int, rotary: RotaryEmbedding):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.multihead_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.linear1 = nn.Linear(dim, ff_size)
        self.linear2 = nn.Linear(ff_size, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)
        self.film1 = DenseFiLM(dim)
        self.film2 = DenseFiLM(dim)
        self.film3 = DenseFiLM(dim)
        self.rotary = rotary

    def forward(self, x: torch.Tensor, memory: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        qk = self.rotary(h)
        x = x + film(self.self_attn(qk, qk, h, need_weights=False)[0], self.film1(t))
        h = self.norm2(x)
        x = x + film(self.multihead_attn(self.rotary(h), self.rotary(memory), memory, need_weights=False)[0],
                     self.film2(t))
        return x + film(self.linear2(F.gelu(self.linear1(self.norm3(x)))), self.film3(t))


class DecoderStack(nn.Module):
    def __init__(self, layers: list[FiLMDecoderLayer]):
        super().__init__()
        self.stack = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        for layer in self.stack:
            x = layer(x, memory, t)
        return x


class MotionDecoder(nn.Module):
    """The LMDM denoiser: ``forward(x, cond_frame, cond, t, keep) -> x0`` for a batch of windows.

    x (B, seq_len, motion_dim), cond_frame (B, motion_dim), cond (B, seq_len, cond_dim), t (B,) int64 diffusion
    steps, keep (B,) bool: true = conditioned on ``cond``, false = the unconditional (null-condition) pass.
    """

    def __init__(self, config: LMDMConfig = LMDMConfig()):
        super().__init__()
        self.config = config
        dim = config.latent_dim
        self.null_cond_embed = nn.Parameter(torch.zeros(1, config.seq_len, dim))
        self.null_cond_hidden = nn.Parameter(torch.zeros(1, dim))
        self.rotary = RotaryEmbedding(dim)
        self.time_mlp = nn.Sequential(SinusoidalStepEmbedding(dim), nn.Linear(dim, dim * 4), nn.Mish())
        self.to_time_cond = nn.Sequential(nn.Linear(dim * 4, dim))
        self.to_time_tokens = nn.Sequential(nn.Linear(dim * 4, dim * 2), SplitTokens(2))
        self.norm_cond = nn.LayerNorm(dim)
        self.input_projection = nn.Linear(config.motion_dim * 2, dim)
        self.cond_encoder = nn.Sequential(
            *(EncoderLayer(dim, config.num_heads, config.ff_size, self.rotary) for _ in range(2)))
        self.cond_projection = nn.Linear(config.cond_dim, dim)
        self.non_attn_cond_projection = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim), nn.SiLU(),
                                                      nn.Linear(dim, dim))
        self.seqTransDecoder = DecoderStack(
            [FiLMDecoderLayer(dim, config.num_heads, config.ff_size, self.rotary) for _ in range(config.num_layers)])
        self.final_layer = nn.Linear(dim, config.motion_dim)

    def forward(self, x: torch.Tensor, cond_frame: torch.Tensor, cond: torch.Tensor, t: torch.Tensor,
                keep: torch.Tensor) -> torch.Tensor:
        frames = cond_frame[:, None, :].expand(-1, x.shape[1], -1)
        h = self.input_projection(torch.cat([x, frames], dim=-1))

        tokens = self.cond_projection(cond)
        for layer in self.cond_encoder:
            tokens = layer(tokens)
        tokens = torch.where(keep[:, None, None], tokens, self.null_cond_embed.to(tokens.dtype))
        pooled = self.non_attn_cond_projection(tokens.mean(dim=-2))
        pooled = torch.where(keep[:, None], pooled, self.null_cond_hidden.to(pooled.dtype))

        t_hidden = self.time_mlp(t)
        film_vector = self.to_time_cond(t_hidden) + pooled
        memory = self.norm_cond(torch.cat((tokens, self.to_time_tokens(t_hidden)), dim=-2))

        return self.final_layer(self.seqTransDecoder(h, memory, film_vector))

    def forward_pair(self, x: torch.Tensor, cond_frame: torch.Tensor, cond: torch.Tensor,
                     t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(unconditional, conditional) outputs of one batch, computed as one batch of twice the size."""
        n = x.shape[0]
        keep = torch.cat([torch.zeros(n, dtype=torch.bool), torch.ones(n, dtype=torch.bool)]).to(x.device)
        out = self(x.repeat(2, 1, 1), cond_frame.repeat(2, 1), cond.repeat(2, 1, 1), t.repeat(2), keep)
        return out[:n], out[n:]
