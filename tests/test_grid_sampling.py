"""Volumetric grid sampling without GridSample: the gather-based sampler gives PyTorch's F.grid_sample values (in
PyTorch and in ONNX), and the warping_spade graph exported with it has only operators stock TensorRT 10 builds."""
from __future__ import annotations

import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from export_scripts.networks.sampling import grid_sample_3d, sample_volume, use_grid_sampler
from export_scripts.onnx_export import OPSET, example_inputs, export_onnx, relative_l2, run_onnx, verify_onnx
from export_scripts.profiles import get_profile
from export_scripts.served_models import served_models
from export_scripts.serving_heads import serving_modules
from export_scripts.synthetic_weights import synthetic_networks

SAMPLE_TOLERANCE = 1e-5  # max abs difference of sampled values, float32
GRAPH_TOLERANCE = 1e-5  # rel-L2 between the gather and the GridSample exports of warping_spade
IMAGE_TOLERANCE = 1e-4  # max abs difference between their images (values in [0, 1])
REL_TOLERANCE = 1e-4  # the export's rel-L2 check against PyTorch

# ONNX operators TensorRT 10's ONNX parser implements natively (onnx/onnx-tensorrt docs/operators.md, TensorRT 10.x),
# restricted to those a convolutional network like this one could plausibly use. GridSample is deliberately absent:
# TensorRT supports it on 4-D inputs only.
TENSORRT_NATIVE_OPS = {
    "Abs", "Add", "And", "AveragePool", "BatchNormalization", "Cast", "Ceil", "Clip", "Concat", "Constant",
    "ConstantOfShape", "Conv", "ConvTranspose", "CumSum", "DepthToSpace", "Div", "Einsum", "Equal", "Erf", "Exp",
    "Expand", "Flatten", "Floor", "Gather", "GatherElements", "GatherND", "Gemm", "GlobalAveragePool", "Greater",
    "GreaterOrEqual", "Identity", "InstanceNormalization", "LeakyRelu", "Less", "LessOrEqual", "MatMul", "Max",
    "MaxPool", "Min", "Mul", "Neg", "Not", "Or", "Pad", "Pow", "Range", "Reciprocal", "ReduceMax", "ReduceMean",
    "ReduceSum", "Relu", "Reshape", "Resize", "Round", "Shape", "Sigmoid", "Sign", "Slice", "Softmax", "SpaceToDepth",
    "Split", "Sqrt", "Squeeze", "Sub", "Tanh", "Tile", "Transpose", "Unsqueeze", "Where",
}


def random_case(seed: int, batch: int = 3, channels: int = 4, volume=(5, 6, 7), out=(4, 5, 6)):
    """A random non-cubic volume and a grid reaching half a volume beyond [-1, 1] on every side."""
    gen = torch.Generator().manual_seed(seed)
    volume_tensor = torch.randn((batch, channels, *volume), generator=gen)
    grid = 3.0 * torch.rand((batch, *out, 3), generator=gen) - 1.5
    return volume_tensor, grid


def max_difference(a, b) -> float:
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())


def op_types(path) -> set[str]:
    return {node.op_type for node in onnx.load(str(path)).graph.node}


class Sampler(nn.Module):
    def __init__(self, sampler: str, padding_mode: str, align_corners: bool):
        super().__init__()
        self.sampler, self.padding_mode, self.align_corners = sampler, padding_mode, align_corners

    def forward(self, volume: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        return sample_volume(volume, grid, self.sampler, self.padding_mode, self.align_corners)


def export_sampler(module: nn.Module, path) -> None:
    volume, grid = random_case(0, batch=2)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (volume, grid), str(path), input_names=["volume", "grid"], output_names=["out"],
                          dynamic_axes={name: {0: "batch"} for name in ("volume", "grid", "out")},
                          opset_version=OPSET, dynamo=False)


def run(path, volume: torch.Tensor, grid: torch.Tensor) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"volume": volume.numpy(), "grid": grid.numpy()})[0]


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("padding_mode", ["zeros", "border"])
def test_gather_sampler_equals_torch_grid_sample(padding_mode, align_corners):
    for seed in range(3):
        volume, grid = random_case(seed)
        expected = F.grid_sample(volume, grid, mode="bilinear", padding_mode=padding_mode, align_corners=align_corners)
        got = grid_sample_3d(volume, grid, padding_mode=padding_mode, align_corners=align_corners)
        assert got.shape == expected.shape == (3, 4, 4, 5, 6)
        assert max_difference(got, expected) <= SAMPLE_TOLERANCE


def test_zero_padding_fades_out_at_the_edge_and_border_padding_repeats_the_edge():
    """At x = 1 with align_corners=False (the outer edge of the last voxel, half a voxel beyond its centre) zero
    padding averages the edge voxel with a zero; border padding returns the edge voxel."""
    volume = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(1, 1, 2, 3, 4)
    grid = torch.tensor([[[[[1.0, 0.0, -0.5]]]]])  # y = 0: centre of row 1 of 3; z = -0.5: centre of slice 0 of 2
    edge = volume[0, 0, 0, 1, -1]
    assert grid_sample_3d(volume, grid, "zeros").item() == pytest.approx(edge.item() / 2)
    assert grid_sample_3d(volume, grid, "border").item() == pytest.approx(edge.item())


def test_networks_sample_natively_by_default_and_switch_without_changing_the_state_dict():
    networks = synthetic_networks(get_profile("tiny"), seed=0)
    warping = networks.warping_module
    assert warping.grid_sampler == warping.dense_motion_network.grid_sampler == "native"
    state = warping.state_dict()
    use_grid_sampler(warping, "gather")
    assert warping.grid_sampler == warping.dense_motion_network.grid_sampler == "gather"
    assert warping.state_dict().keys() == state.keys()
    with pytest.raises(ValueError, match="unknown grid sampler 'cubic'"):
        use_grid_sampler(warping, "cubic")


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("padding_mode", ["zeros", "border"])
def test_exported_gather_sampler_equals_onnx_grid_sample(tmp_path, padding_mode, align_corners):
    gather, native = tmp_path / "gather.onnx", tmp_path / "native.onnx"
    export_sampler(Sampler("gather", padding_mode, align_corners), gather)
    export_sampler(Sampler("native", padding_mode, align_corners), native)
    assert "GridSample" in op_types(native)
    assert "GridSample" not in op_types(gather) and op_types(gather) <= TENSORRT_NATIVE_OPS
    volume, grid = random_case(5, batch=3)  # another batch size than the export's: the batch axis is dynamic
    expected = F.grid_sample(volume, grid, padding_mode=padding_mode, align_corners=align_corners).numpy()
    assert max_difference(run(gather, volume, grid), run(native, volume, grid)) <= SAMPLE_TOLERANCE
    assert max_difference(run(gather, volume, grid), expected) <= SAMPLE_TOLERANCE


@pytest.fixture(scope="module")
def tiny_warping_exports(tmp_path_factory):
    """warping_spade of the tiny profile exported twice, with GridSample and with the gather sampler, and the native
    PyTorch head both are checked against."""
    profile = get_profile("tiny")
    networks = synthetic_networks(profile, seed=0)
    spec = next(s for s in served_models(profile) if s.name == "warping_spade")
    folder = tmp_path_factory.mktemp("warping")
    native_module = serving_modules(networks)["warping_spade"]
    export_onnx(native_module, spec, folder / "native.onnx")
    export_onnx(serving_modules(networks, grid_sampler="gather")["warping_spade"], spec, folder / "gather.onnx")
    return spec, native_module, folder / "native.onnx", folder / "gather.onnx"


def test_warping_spade_gather_export_has_only_tensorrt_native_operators(tiny_warping_exports):
    _, _, native, gather = tiny_warping_exports
    assert "GridSample" in op_types(native)
    assert "GridSample" not in op_types(gather)
    assert op_types(gather) - TENSORRT_NATIVE_OPS == set()


def test_warping_spade_gather_export_reproduces_pytorch_and_the_grid_sample_export(tiny_warping_exports):
    """The export check (rel-L2 against the native PyTorch head) passes. Per sample the two graphs agree to ~1e-7;
    through the whole network (the first sampling feeds the deformation that drives the second) that grows to ~2e-5
    at worst on the image, rel-L2 ~2e-6: the order of the float noise between the GridSample export and PyTorch
    themselves (~3e-5), far below one 8-bit level (3.9e-3)."""
    spec, native_module, native, gather = tiny_warping_exports
    assert verify_onnx(native_module, spec, gather, batch=1, seed=11).worst_error <= REL_TOLERANCE
    inputs = example_inputs(spec, batch=1, seed=11)  # the inputs verify_onnx drew
    (from_gather,) = run_onnx(gather, spec, inputs)
    (from_native,) = run_onnx(native, spec, inputs)
    assert relative_l2(from_gather, from_native) <= GRAPH_TOLERANCE
    assert max_difference(from_gather, from_native) <= IMAGE_TOLERANCE


def test_a_gather_export_leaves_the_networks_native():
    networks = synthetic_networks(get_profile("tiny"), seed=0)
    modules = serving_modules(networks, grid_sampler="gather")
    assert modules["warping_spade"].warping.grid_sampler == "gather"
    assert networks.warping_module.grid_sampler == "native"
    assert networks.warping_module.dense_motion_network.grid_sampler == "native"
