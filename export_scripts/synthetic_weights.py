"""Deterministic synthetic weights for any profile, for when no official checkpoint is given.

Each tensor is drawn from its own generator seeded by (seed, crc32(state-dict name)), so a tensor depends only on the
seed, its name and its shape. The scales keep activations in a sensible range through the whole pipeline:

* BatchNorm statistics: running_var ~ U(0.5, 1.5), running_mean ~ 0.1 N(0, 1); num_batches_tracked = 0
* 1-D weights (norm gains) ~ 1 + 0.1 N; other 1-D tensors (biases) ~ 0.05 N
* GRN gamma/beta (all dims but one equal to 1) ~ 0.1 N
* other tensors ~ N / sqrt(fan_in)
* spectral norm: ``weight_v`` a random unit vector, ``weight_u`` = normalise(W v), so sigma = |W v| > 0
* motion heads scaled so that keypoints stay inside the warping volume (kp x0.3, exp x0.03, t x0.05,
  scale x0.05 with +1.5 on its bias), like real templates (scale ~1.5, |exp| < 0.1, |t| < 0.15).

The outputs are structured noise: they exercise every computation but say nothing about image quality.
"""
from __future__ import annotations

import zlib

import numpy as np
import torch
from torch import nn

from .build import LivePortraitNetworks, build_networks
from .profiles import Profile

HEAD_SCALES = {"fc_kp": (0.3, 0.0), "fc_exp": (0.03, 0.0), "fc_t": (0.05, 0.0), "fc_scale": (0.05, 1.5)}


def _draw(name: str, shape: tuple[int, ...], seed: int) -> np.ndarray:
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    leaf = name.rsplit(".", 1)[-1]
    if leaf == "num_batches_tracked":
        return np.zeros(shape, dtype=np.int64)
    if leaf == "running_var":
        return rng.uniform(0.5, 1.5, shape)
    if leaf == "running_mean":
        return 0.1 * rng.standard_normal(shape)
    if len(shape) == 1:
        return (1.0 if leaf in ("weight", "gamma") else 0.0) + (0.1 if leaf in ("weight", "gamma") else 0.05) * rng.standard_normal(shape)
    if sum(d != 1 for d in shape) == 1:
        return 0.1 * rng.standard_normal(shape)
    return rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))


def synthetic_state_dict(module: nn.Module, seed: int, prefix: str = "") -> dict[str, torch.Tensor]:
    state = {}
    for name, tensor in module.state_dict().items():
        full = prefix + name
        if name.endswith("weight_u") or name.endswith("weight_v"):
            continue
        values = _draw(full, tuple(tensor.shape), seed)
        layer = full.rsplit(".", 2)[-2] if full.count(".") >= 1 else ""
        if layer in HEAD_SCALES:
            factor, offset = HEAD_SCALES[layer]
            values = values * factor + (offset if name.endswith("bias") else 0.0)
        state[name] = torch.from_numpy(np.asarray(values).astype(tensor.numpy().dtype))
    for name in [n for n in module.state_dict() if n.endswith("weight_v")]:
        owner = name[: -len("weight_v")]
        weight = state[owner + "weight_orig"].double().reshape(state[owner + "weight_orig"].shape[0], -1).numpy()
        rng = np.random.default_rng([seed, zlib.crc32((prefix + name).encode())])
        v = rng.standard_normal(weight.shape[1])
        v /= np.linalg.norm(v)
        u = weight @ v
        u /= np.linalg.norm(u)
        state[owner + "weight_v"] = torch.from_numpy(v.astype(np.float32))
        state[owner + "weight_u"] = torch.from_numpy(u.astype(np.float32))
    return state


def load_synthetic_weights(networks: LivePortraitNetworks, seed: int) -> None:
    """Fill every network with synthetic weights (in place)."""
    for name, module in networks.modules().items():
        module.load_state_dict(synthetic_state_dict(module, seed, prefix=f"{name}."), strict=True)


def synthetic_networks(profile: Profile, seed: int = 0) -> LivePortraitNetworks:
    """The networks of ``profile`` built and filled with synthetic weights of ``seed`` (eval mode, no gradients)."""
    networks = build_networks(profile)
    load_synthetic_weights(networks, seed)
    return networks
