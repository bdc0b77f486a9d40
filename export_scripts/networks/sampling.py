"""Trilinear sampling of a 3-D feature volume, natively (``F.grid_sample``) or with plain gathers for TensorRT.

The warping module samples 5-D volumes twice (the dense-motion network's per-keypoint deformed features and the final
warp of the appearance feature volume). ONNX exports ``F.grid_sample`` as one GridSample node, which stock TensorRT 10
cannot build on 5-D inputs. :func:`grid_sample_3d` computes exactly the same values with operators TensorRT builds
natively (Floor, Clip, arithmetic, Where, Cast, Expand, GatherElements), so the whole ``warping_spade`` graph can
become one engine. The networks pick the implementation through their ``grid_sampler`` attribute (``"native"`` by
default, so PyTorch results and the exported GridSample graphs are unchanged); :func:`use_grid_sampler` sets it on a
module tree.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

GRID_SAMPLERS = ("native", "gather")
PADDING_MODES = ("zeros", "border")


def grid_sample_3d(volume: torch.Tensor, grid: torch.Tensor, padding_mode: str = "zeros",
                   align_corners: bool = False) -> torch.Tensor:
    """``F.grid_sample(volume, grid, mode="bilinear", padding_mode, align_corners)`` on 5-D inputs, as gathers.

    volume: [N, C, D, H, W]; grid: [N, Do, Ho, Wo, 3] holding (x, y, z) in [-1, 1] (x indexes W, y H, z D).
    Returns [N, C, Do, Ho, Wo].

    The math, per axis of size S and normalised coordinate g:

    * unnormalise to a voxel coordinate: ``u = (g + 1) / 2 * (S - 1)`` with ``align_corners=True`` (-1 and 1 are the
      centres of the first and last voxels), ``u = ((g + 1) * S - 1) / 2`` with ``align_corners=False`` (-1 and 1 are
      the outer edges of the first and last voxels);
    * ``padding_mode="border"`` clamps ``u`` to ``[0, S - 1]``; ``"zeros"`` leaves it alone;
    * the two neighbours are ``i0 = floor(u)`` and ``i1 = i0 + 1``, with weights ``i1 - u`` and ``u - i0``.

    The output is the sum over the 8 corners (one neighbour per axis) of ``weight_x * weight_y * weight_z *
    volume[n, :, iz, iy, ix]``. As in PyTorch, a corner outside the volume contributes 0 on its own (so near the edge
    the remaining corners still count: that is zero padding); after the border clamp an outside corner always has
    weight 0, so the same rule gives border padding.

    Each corner is one ``torch.gather`` (ONNX GatherElements) on the volume flattened to [N, C, D*H*W]: a sample
    reads voxel ``(iz * H + iy) * W + ix`` (indices clamped into the volume, the weight zeroed if the corner was
    outside) in every channel. Temporaries are a few [N, Do*Ho*Wo] index/weight tensors per axis and, per corner, the
    [N, C, Do*Ho*Wo] gathered values (the size of the output) and their index broadcast over C.
    """
    if volume.dim() != 5 or grid.dim() != 5 or grid.shape[-1] != 3:
        raise ValueError(f"expected a volume [N, C, D, H, W] and a grid [N, Do, Ho, Wo, 3], got "
                         f"{tuple(volume.shape)} and {tuple(grid.shape)}")
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")
    n, c, d, h, w = volume.shape
    out_shape = grid.shape[1:4]
    flat = volume.reshape(n, c, d * h * w)  # voxel (z, y, x) at (z * H + y) * W + x
    grid = grid.reshape(n, -1, 3)

    # per axis: the two neighbours (clamped voxel indices) and their weights (0 where the neighbour is outside)
    (ix, wx), (iy, wy), (iz, wz) = [_neighbours(grid[..., axis], size, padding_mode, align_corners)
                                    for axis, size in enumerate((w, h, d))]

    out = None
    for z in range(2):
        for y in range(2):
            for x in range(2):
                voxel = (iz[z] * h + iy[y]) * w + ix[x]  # [N, Do*Ho*Wo]
                value = torch.gather(flat, 2, voxel[:, None, :].expand(-1, c, -1))  # [N, C, Do*Ho*Wo]
                value = value * (wx[x] * wy[y] * wz[z])[:, None, :]
                out = value if out is None else out + value
    return out.reshape(n, c, *out_shape)


def _neighbours(coordinate: torch.Tensor, size: int, padding_mode: str, align_corners: bool):
    """For normalised coordinates along one axis of ``size`` voxels: ([i0, i1], [w0, w1]), the int64 indices of the
    two neighbouring voxels clamped into [0, size - 1], and their interpolation weights, zero for a neighbour that
    lies outside the volume."""
    if align_corners:
        u = (coordinate + 1) / 2 * (size - 1)
    else:
        u = ((coordinate + 1) * size - 1) / 2
    if padding_mode == "border":
        u = u.clamp(0, size - 1)
    i0 = torch.floor(u)
    i1 = i0 + 1
    indices, weights = [], []
    for i, weight in ((i0, i1 - u), (i1, u - i0)):
        inside = (i >= 0) & (i <= size - 1)
        weights.append(torch.where(inside, weight, 0.0))
        indices.append(i.clamp(0, size - 1).to(torch.int64))
    return indices, weights


def sample_volume(volume: torch.Tensor, grid: torch.Tensor, sampler: str = "native", padding_mode: str = "zeros",
                  align_corners: bool = False) -> torch.Tensor:
    """Trilinear ``grid_sample`` of a 5-D volume with the chosen implementation: ``"native"`` (``F.grid_sample``,
    one ONNX GridSample node) or ``"gather"`` (:func:`grid_sample_3d`, TensorRT-buildable)."""
    if sampler == "native":
        return F.grid_sample(volume, grid, mode="bilinear", padding_mode=padding_mode, align_corners=align_corners)
    if sampler == "gather":
        return grid_sample_3d(volume, grid, padding_mode=padding_mode, align_corners=align_corners)
    raise ValueError(f"unknown grid sampler {sampler!r}; choose one of {GRID_SAMPLERS}")


def use_grid_sampler(module: nn.Module, sampler: str) -> nn.Module:
    """Make every submodule of ``module`` that samples volumes (it has a ``grid_sampler`` attribute) use ``sampler``;
    returns ``module``. The choice is a plain attribute, not a parameter or buffer: state dicts are unchanged."""
    if sampler not in GRID_SAMPLERS:
        raise ValueError(f"unknown grid sampler {sampler!r}; choose one of {GRID_SAMPLERS}")
    for submodule in module.modules():
        if hasattr(submodule, "grid_sampler"):
            submodule.grid_sampler = sampler
    return module
