"""The ``pytorch`` serving target: the served models as PyTorch modules, run by Triton's Python backend.

This module and the network code it needs travel inside every model folder of a ``pytorch`` repository (as the
package ``liveportrait_torch``, next to ``model.py`` and ``weights.pt``), so a repository is self-contained: the
backend builds the module named by the model, loads its state dict and serves it. Nothing here imports
onnx/onnxruntime.

* **Same contract.** Every served model of ``served_models.py`` is its serving head; every ensemble is one fused
  module with the ensemble's name and tensors (``motion_extractor_u8``: preprocess -> motion; ``render_*``:
  appearance -> warping + decoder -> postprocess), so intermediate tensors never leave the GPU.
* **Appearance once per source.** The render models take the appearance volume from a ``FeatureCache`` keyed by the
  source crop, and compute it only on a miss.
* **Precision policy** (``fp16``): convolutions and matrix products in float16 under autocast, with float32 islands
  where the error comes from: every normalisation (batch, instance, layer norm, GRN) and the output layers
  (the decoder's last convolution + sigmoid, the motion heads). Autocast itself keeps softmax, exp/pow (the keypoint
  Gaussians) and grid sampling in float32, and the keypoint coordinate math stays in float32 because the keypoints
  arrive as float32. ``fp32`` is the reference (TF32 off).
* **Fusion**: ``torch.compile`` of the per-frame part (warping + decoder + postprocess), optionally with CUDA graphs,
  paid at load by warming up every batch bucket; batches are padded up to the next bucket so that a bounded set of
  shapes (and CUDA graphs) is ever compiled.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .build import build_networks
from .feature_cache import FeatureCache
from .model_spec import EnsembleModel, TensorSpec
from .networks.motion_extractor import ChannelsFirstLayerNorm, GlobalResponseNorm
from .profiles import get_profile
from .served_models import AUDIO_MODELS, contract_name, ensembles
from .serving_heads import PreprocessImage, serving_modules

PRECISIONS = ("fp32", "fp16")
FP32_ISLANDS = ("normalization", "output")
COMPILE_MODES = ("none", "default", "reduce-overhead", "max-autotune-no-cudagraphs")
WEIGHTS_FILE = "weights.pt"


class Renderer(nn.Module):
    """source_u8, kp_source, kp_driving -> postprocessed frame: the render ensembles as one module."""

    def __init__(self, appearance: nn.Module, warping_spade: nn.Module, postprocess: nn.Module):
        super().__init__()
        self.preprocess = PreprocessImage()
        self.appearance = appearance
        self.warping_spade = warping_spade
        self.postprocess = postprocess

    def features(self, source_u8: torch.Tensor) -> torch.Tensor:
        return self.appearance(self.preprocess(source_u8))

    def decode(self, feature_3d: torch.Tensor, kp_source: torch.Tensor, kp_driving: torch.Tensor) -> torch.Tensor:
        return self.postprocess(self.warping_spade(feature_3d, kp_source, kp_driving))

    def forward(self, source_u8: torch.Tensor, kp_source: torch.Tensor, kp_driving: torch.Tensor) -> torch.Tensor:
        return self.decode(self.features(source_u8), kp_source, kp_driving)


def fused_module(ensemble: EnsembleModel, modules: dict[str, nn.Module]) -> nn.Module:
    """An ensemble of the contract as one module: a render chain becomes a ``Renderer``, any other a sequence."""
    steps = [step.model for step in ensemble.steps]
    if steps[:3] == ["preprocess_image", "appearance_feature_extractor", "warping_spade"] and len(steps) == 4:
        return Renderer(modules[steps[1]], modules[steps[2]], modules[steps[3]])
    return nn.Sequential(*(modules[name] for name in steps))


def build_served_module(networks, profile_name: str, name: str) -> nn.Module:
    """The module serving model ``name`` of the contract (a served model's head, or a fused ensemble)."""
    name = contract_name(name)  # an animal repository's render_i420_animal is the contract's render_i420
    if name in AUDIO_MODELS:
        from .audio_models import audio_module

        return audio_module(name, profile_name)
    profile = get_profile(profile_name)
    modules = serving_modules(networks)
    if name in modules:
        return modules[name]
    for ensemble in ensembles(profile):
        if ensemble.name == name:
            return fused_module(ensemble, modules)
    raise KeyError(f"{name!r} is not a model of the contract")


# --- precision policy ------------------------------------------------------------------------------------------


class Float32(nn.Module):
    """Runs ``module`` in float32 with autocast off; hands back the input's dtype unless ``keep_float32``."""

    def __init__(self, module: nn.Module, keep_float32: bool = False):
        super().__init__()
        self.module = module
        self.keep_float32 = keep_float32

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            y = self.module(x.float())
        return y if self.keep_float32 else y.to(x.dtype)


NORMALIZATIONS = (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm, nn.LayerNorm,
                  ChannelsFirstLayerNorm, GlobalResponseNorm)  # not SpectralNormConv2d: a convolution, fp16


def _island(name: str, module: nn.Module) -> str | None:
    if isinstance(module, NORMALIZATIONS):
        return "normalization"
    if name == "conv_img" or name.startswith("fc_"):
        return "output"
    return None


def keep_float32(module: nn.Module, islands: tuple[str, ...] = FP32_ISLANDS) -> nn.Module:
    """Wrap the submodules of the named islands in ``Float32`` (in place; call after loading weights)."""
    for name, child in list(module.named_children()):
        island = _island(name, child)
        if island in islands:
            setattr(module, name, Float32(child, keep_float32=island == "output"))
        elif island is None:
            keep_float32(child, islands)
    return module


# --- runtime -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RuntimeOptions:
    device: str = "cpu"
    precision: str = "fp32"
    compile: str = "none"
    batch_buckets: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
    feature_cache_bytes: int = 1 << 30
    islands: tuple[str, ...] = FP32_ISLANDS

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision {self.precision!r}: choose one of {PRECISIONS}")
        if self.compile not in COMPILE_MODES:
            raise ValueError(f"compile {self.compile!r}: choose one of {COMPILE_MODES}")


def load_module(version_dir: Path, profile_name: str, name: str) -> nn.Module:
    """Build the module of ``name`` without initialising weights, then load its state dict strictly."""
    with torch.device("meta"):
        module = build_served_module(build_networks(get_profile(profile_name)), profile_name, name)
    weights = version_dir / WEIGHTS_FILE
    state = torch.load(weights, map_location="cpu", weights_only=True) if weights.is_file() else {}
    module.load_state_dict(state, strict=True, assign=True)
    return module.eval().requires_grad_(False)


class ServedTorchModel:
    """One served model on one device: numpy arrays in, numpy arrays out, in the contract's tensor order."""

    def __init__(self, module: nn.Module, inputs: list[TensorSpec], options: RuntimeOptions, max_batch: int = 32):
        self.options = options
        self.inputs = inputs
        self.device = torch.device(options.device)
        if self.device.type == "cuda":
            torch.backends.cudnn.allow_tf32 = False  # fp32 means fp32: the float32 islands and the fp32 reference
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.benchmark = True
        if options.precision == "fp16":
            keep_float32(module, options.islands)
        self.module = module.to(self.device)
        self.renderer = module if isinstance(module, Renderer) else None
        self.eager = self.renderer.decode if self.renderer else self.module
        self.hot = self.eager if options.compile == "none" else torch.compile(self.eager, mode=options.compile)
        self.compile_error: str | None = None
        self.cache = FeatureCache(options.feature_cache_bytes) if self.renderer else None
        # padding to buckets bounds the shapes compiled (and CUDA graphs captured); eager runs take any batch
        self.buckets = sorted({b for b in options.batch_buckets if b <= max_batch} | {max_batch}) \
            if options.compile != "none" else []
        self.compile_s: dict[int, float] = {}

    def autocast(self):
        return torch.autocast(self.device.type, dtype=torch.float16, enabled=self.options.precision == "fp16")

    def to_device(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array)).to(self.device, non_blocking=True)

    def features(self, crops: np.ndarray) -> torch.Tensor:
        with self.autocast():
            return self.renderer.features(self.to_device(crops))

    def bucket(self, n: int) -> int:
        return next((b for b in self.buckets if b >= n), n)

    @torch.inference_mode()
    def __call__(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        n = arrays[0].shape[0]
        if self.renderer:
            source, *kps = arrays
            args = [self.cache.features(source, self.features), *(self.to_device(k) for k in kps)]
        else:
            args = [self.to_device(a) for a in arrays]
        size = self.bucket(n)
        if size > n:
            args = [torch.cat([a, a[-1:].expand(size - n, *a.shape[1:])]) for a in args]
        with self.autocast():
            outputs = self.hot(*args)
        outputs = outputs if isinstance(outputs, (tuple, list)) else (outputs,)
        return [(o[:n].float() if o.is_floating_point() else o[:n]).cpu().numpy() for o in outputs]

    def warm_up(self, repeats: int = 3) -> dict[int, float]:
        """Run every batch bucket (compiling and capturing here, at load; eager: batch 1); seconds per bucket.
        A compilation that fails leaves the model serving eagerly (``compile_error`` says why)."""
        try:
            return self._warm_up(repeats)
        except Exception as exc:
            if self.hot is self.eager:
                raise
            self.compile_error = f"{type(exc).__name__}: {exc}"
            self.hot = self.eager
            return self._warm_up(repeats)

    def _warm_up(self, repeats: int) -> dict[int, float]:
        rng = np.random.default_rng(0)
        for size in self.buckets or [1]:
            started = time.perf_counter()
            for _ in range(repeats):
                self([_random(spec, size, rng) for spec in self.inputs])
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.compile_s[size] = time.perf_counter() - started
        if self.cache:
            self.cache.clear()
        return self.compile_s


def _random(spec: TensorSpec, batch: int, rng: np.random.Generator) -> np.ndarray:
    shape = (batch, *spec.dims)
    if spec.dtype == "UINT8":
        return rng.integers(0, 256, shape, dtype=np.uint8)
    scale = 1.0 if spec.name in ("image", "feature_3d") else 0.3  # keypoints and ratios: small values
    return (scale * rng.standard_normal(shape)).astype(np.float32)
