"""HuBERT audio encoder (the ``stable layer norm`` variant of facebook/hubert-large-ls960-ft, which Ditto's
``hubert_streaming_fix_kv.onnx`` is based on): 16 kHz samples -> 1024-d features at 50 Hz.

Parameter names and their order are those of ``transformers.HubertModel`` with the same configuration, so its
checkpoints load strictly and a seeded initialisation over ``named_parameters()`` draws the same values:

* ``feature_extractor.conv_layers.i``: Conv1d (stride 5, 2, ... ) -> LayerNorm over channels -> GELU;
* ``feature_projection``: LayerNorm, Linear to the hidden width;
* ``encoder.pos_conv_embed.conv``: a grouped Conv1d (kernel 128, padding 64, the last output step dropped) whose
  weight is weight-normalised over the kernel axis (``parametrizations.weight.original0`` = g, ``original1`` = v),
  GELU, added to the input;
* ``encoder.layers.i``: pre-norm self-attention (``k_proj``, ``v_proj``, ``q_proj``, ``out_proj``) and feed-forward
  (``intermediate_dense``, GELU, ``output_dense``); then ``encoder.layer_norm``;
* ``masked_spec_embed`` (only used in training, with SpecAugment) is kept so that the names and order match.

The output is the last hidden state (``HubertModel(...).last_hidden_state``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm


@dataclass(frozen=True)
class HubertConfig:
    """``full`` = hubert-large-ls960-ft (the ``hubert_config`` of the audio golden's metadata)."""

    hidden_size: int = 1024
    num_hidden_layers: int = 24
    num_attention_heads: int = 16
    intermediate_size: int = 4096
    conv_dim: tuple[int, ...] = (512, 512, 512, 512, 512, 512, 512)
    conv_stride: tuple[int, ...] = (5, 2, 2, 2, 2, 2, 2)
    conv_kernel: tuple[int, ...] = (10, 3, 3, 3, 3, 2, 2)
    num_conv_pos_embeddings: int = 128
    num_conv_pos_embedding_groups: int = 16
    layer_norm_eps: float = 1e-5


class ConvLayer(nn.Module):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int):
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, kernel, stride=stride, bias=True)
        self.layer_norm = nn.LayerNorm(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer_norm(self.conv(x).transpose(-2, -1)).transpose(-2, -1)
        return F.gelu(x)


class FeatureEncoder(nn.Module):
    def __init__(self, config: HubertConfig):
        super().__init__()
        channels = (1, *config.conv_dim)
        self.conv_layers = nn.ModuleList(
            ConvLayer(channels[i], channels[i + 1], config.conv_kernel[i], config.conv_stride[i])
            for i in range(len(config.conv_dim)))

    def forward(self, samples: torch.Tensor) -> torch.Tensor:
        x = samples[:, None, :]
        for layer in self.conv_layers:
            x = layer(x)
        return x


class FeatureProjection(nn.Module):
    def __init__(self, config: HubertConfig):
        super().__init__()
        self.layer_norm = nn.LayerNorm(config.conv_dim[-1], eps=config.layer_norm_eps)
        self.projection = nn.Linear(config.conv_dim[-1], config.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projection(self.layer_norm(x))


class PositionalConvEmbedding(nn.Module):
    def __init__(self, config: HubertConfig):
        super().__init__()
        kernel = config.num_conv_pos_embeddings
        conv = nn.Conv1d(config.hidden_size, config.hidden_size, kernel, padding=kernel // 2,
                         groups=config.num_conv_pos_embedding_groups)
        self.conv = weight_norm(conv, name="weight", dim=2)
        self.trim = 1 if kernel % 2 == 0 else 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x.transpose(1, 2))
        if self.trim:
            y = y[:, :, : -self.trim]
        return F.gelu(y).transpose(1, 2)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.q_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        split = (lambda y: y.unflatten(-1, (self.heads, -1)).transpose(1, 2))
        out = F.scaled_dot_product_attention(split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x)))
        return self.out_proj(out.transpose(1, 2).flatten(-2))


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.intermediate_dense = nn.Linear(dim, hidden)
        self.output_dense = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_dense(F.gelu(self.intermediate_dense(x)))


class EncoderLayer(nn.Module):
    def __init__(self, config: HubertConfig):
        super().__init__()
        self.attention = Attention(config.hidden_size, config.num_attention_heads)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.feed_forward = FeedForward(config.hidden_size, config.intermediate_size)
        self.final_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.layer_norm(x))
        return x + self.feed_forward(self.final_layer_norm(x))


class Encoder(nn.Module):
    def __init__(self, config: HubertConfig):
        super().__init__()
        self.pos_conv_embed = PositionalConvEmbedding(config)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.layers = nn.ModuleList(EncoderLayer(config) for _ in range(config.num_hidden_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.pos_conv_embed(x)
        for layer in self.layers:
            x = layer(x)
        return self.layer_norm(x)


class HubertModel(nn.Module):
    """``forward(samples (B, n)) -> (B, frames, hidden_size)``; a 6480-sample window gives 20 frames."""

    def __init__(self, config: HubertConfig = HubertConfig()):
        super().__init__()
        self.config = config
        self.feature_extractor = FeatureEncoder(config)
        self.feature_projection = FeatureProjection(config)
        self.masked_spec_embed = nn.Parameter(torch.zeros(config.hidden_size))
        self.encoder = Encoder(config)

    def forward(self, samples: torch.Tensor) -> torch.Tensor:
        features = self.feature_extractor(samples).transpose(1, 2)
        return self.encoder(self.feature_projection(features))
