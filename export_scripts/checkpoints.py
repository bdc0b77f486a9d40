"""Load official LivePortrait checkpoint files, strictly and safely (``torch.load(weights_only=True)``).

Official download layout::

    <weights>/liveportrait/base_models/{appearance_feature_extractor,motion_extractor,warping_module,spade_generator}.pth
    <weights>/liveportrait/retargeting_models/stitching_retargeting_module.pth
    <weights>/liveportrait_animals/base_models_v1.1/*.pth      (animal set; reuses the human retargeting file)

The retargeting file is one dict: ``retarget_shoulder`` (stitching), ``retarget_mouth`` (lip), ``retarget_eye`` (eye),
each a state dict whose keys may carry the DDP prefix ``module.``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .build import BASE_NETWORKS, LivePortraitNetworks

RETARGETING_GROUPS = {"stitching": "retarget_shoulder", "lip": "retarget_mouth", "eye": "retarget_eye"}
BASE_DIRS = {"human": Path("liveportrait/base_models"), "animal": Path("liveportrait_animals/base_models_v1.1")}
RETARGETING_FILE = Path("liveportrait/retargeting_models/stitching_retargeting_module.pth")


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, or does not match the network."""


@dataclass(frozen=True)
class CheckpointPaths:
    base: dict[str, Path]
    retargeting: Path

    @classmethod
    def in_directory(cls, weights_dir: Path, model_set: str = "human") -> "CheckpointPaths":
        if model_set not in BASE_DIRS:
            raise CheckpointError(f"unknown model set {model_set!r}; choose one of {sorted(BASE_DIRS)}")
        weights_dir = Path(weights_dir)
        base = {name: weights_dir / BASE_DIRS[model_set] / f"{name}.pth" for name in BASE_NETWORKS}
        return cls(base=base, retargeting=weights_dir / RETARGETING_FILE)

    def all_files(self) -> list[Path]:
        return [*self.base.values(), self.retargeting]


def read_checkpoint(path: Path) -> dict:
    """``torch.load`` with ``weights_only=True``: tensors and plain containers only, never arbitrary objects."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or unsafe files
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc


def strip_ddp_prefix(state: dict) -> dict:
    return {key.replace("module.", ""): value for key, value in state.items()}


def _same_shape(saved: torch.Tensor, expected: torch.Tensor) -> bool:
    # torch itself accepts a one-element 1-D tensor for a 0-d buffer (older checkpoints save num_batches_tracked so)
    return saved.shape == expected.shape or (expected.dim() == 0 and tuple(saved.shape) == (1,))


def load_state_strict(module: nn.Module, state: dict, source: str) -> None:
    """Load ``state`` into ``module``; on any missing, unexpected or mis-shaped key raise one clear error."""
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{source}: expected a state dict of tensors")
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    misshaped = [f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in expected.items()
                 if k in state and not _same_shape(state[k], v)]
    if missing or unexpected or misshaped:
        problems = []
        for label, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("mis-shaped keys", misshaped)):
            if keys:
                shown = ", ".join(keys[:8]) + (f", ... ({len(keys)} in all)" if len(keys) > 8 else "")
                problems.append(f"{label}: {shown}")
        raise CheckpointError(f"{source} does not match the network: " + "; ".join(problems))
    module.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()}, strict=True)


def load_official_checkpoints(networks: LivePortraitNetworks, paths: CheckpointPaths) -> None:
    """Load every official file into ``networks`` (in place)."""
    for name, path in paths.base.items():
        load_state_strict(getattr(networks, name), read_checkpoint(path), str(path))
    groups = read_checkpoint(paths.retargeting)
    for part, group in RETARGETING_GROUPS.items():
        if group not in groups:
            raise CheckpointError(f"{paths.retargeting}: missing group {group!r} (found {sorted(groups)})")
        load_state_strict(getattr(networks, part), strip_ddp_prefix(groups[group]), f"{paths.retargeting}[{group}]")
