"""The pytorch target: the GPU target's backend code (PyTorch in Triton's Python backend) served by the real
tritonserver on the CPU, its source-feature cache and its precision policy."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from export_scripts.feature_cache import FeatureCache
from export_scripts.onnx_export import relative_l2
from export_scripts.profiles import TINY
from export_scripts.synthetic_weights import synthetic_networks
from export_scripts.networks.blocks import SpectralNormConv2d
from export_scripts.torch_serving import NORMALIZATIONS, Float32, Renderer, build_served_module, keep_float32
from load_tests.gpu_check import cache_counters

REPO_ROOT = Path(__file__).resolve().parents[1]
BUILD = REPO_ROOT / "build" / "test"
LIVEPORTRAIT_MODELS = ("appearance_feature_extractor", "motion_extractor", "stitching", "retarget_eye", "retarget_lip",
                       "warping_spade", "preprocess_image", "postprocess_image", "postprocess_image_i420",
                       "motion_extractor_u8", "render_u8", "render_i420")


def crops(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 256, 256, 3), dtype=np.uint8)


class Volumes:
    """A stand-in appearance extractor: the volume of a crop is its mean (so a wrong source is visible)."""

    def __init__(self):
        self.computed = 0

    def __call__(self, batch: np.ndarray) -> torch.Tensor:
        self.computed += len(batch)
        return torch.from_numpy(batch.reshape(len(batch), -1).mean(axis=1)).float()[:, None].repeat(1, 256)


# --- the cache ---------------------------------------------------------------------------------------------------


def test_cache_computes_each_source_once_and_hits_afterwards():
    cache, compute = FeatureCache(max_bytes=1 << 20), Volumes()
    sources = crops(2, 0)
    batch = np.stack([sources[0], sources[1], sources[0]])  # a source repeated within one batch
    first = cache.features(batch, compute)
    assert compute.computed == 2 and cache.stats.misses == 2 and cache.stats.hits == 0
    second = cache.features(batch, compute)
    assert compute.computed == 2 and cache.stats.hits == 3
    assert torch.equal(first, second) and torch.equal(first[0], first[2])
    assert cache.bytes == 2 * 256 * 4


def test_cache_is_bounded_by_bytes_and_evicts_the_least_recently_used():
    volume_bytes = 256 * 4
    cache, compute = FeatureCache(max_bytes=2 * volume_bytes), Volumes()
    a, b, c = crops(3, 1)
    cache.features(a[None], compute)
    cache.features(b[None], compute)
    cache.features(a[None], compute)  # a is now the most recently used
    cache.features(c[None], compute)  # evicts b
    assert cache.bytes <= 2 * volume_bytes and len(cache) == 2 and cache.stats.evictions == 1
    computed = compute.computed
    cache.features(a[None], compute)
    assert compute.computed == computed  # a survived
    cache.features(b[None], compute)
    assert compute.computed == computed + 1  # b was recomputed


def test_a_digest_collision_never_returns_another_sources_volume():
    cache, compute = FeatureCache(max_bytes=1 << 20, digest_fn=lambda crop: b"same digest for every crop"), Volumes()
    a, b = crops(2, 2)
    volume_a = cache.features(a[None], compute)
    volume_b = cache.features(b[None], compute)
    both = cache.features(np.stack([a, b]), compute)
    assert not torch.equal(volume_a, volume_b)
    assert torch.equal(both[0], Volumes()(a[None])[0]) and torch.equal(both[1], Volumes()(b[None])[0])


def test_a_volume_larger_than_the_bound_is_served_but_not_kept():
    cache, compute = FeatureCache(max_bytes=100), Volumes()
    assert cache.features(crops(1, 3), compute).shape == (1, 256)
    assert len(cache) == 0 and cache.bytes == 0


# --- the precision policy ----------------------------------------------------------------------------------------


def test_fp32_islands_wrap_every_normalisation_and_output_layer_and_change_nothing_in_fp32():
    networks = synthetic_networks(TINY, seed=0)
    renderer = build_served_module(networks, "tiny", "render_u8")
    source, kp = crops(1, 4), torch.from_numpy(np.random.default_rng(5).normal(0, 0.2, (1, 21, 3)).astype(np.float32))
    with torch.no_grad():
        before = renderer(torch.from_numpy(source), kp, kp * 1.1)
        keep_float32(renderer)
        after = renderer(torch.from_numpy(source), kp, kp * 1.1)
    wrapped = {id(m.module) for m in renderer.modules() if isinstance(m, Float32)}
    norms = [m for m in renderer.modules() if isinstance(m, NORMALIZATIONS)]
    assert {type(m).__name__ for m in norms} >= {"InstanceNorm2d", "BatchNorm2d", "BatchNorm3d"}
    assert all(id(m) in wrapped for m in norms)
    spectral = [m for m in renderer.modules() if isinstance(m, SpectralNormConv2d)]
    assert spectral and not any(id(m) in wrapped for m in spectral)  # the decoder's convolutions stay fp16
    assert sum(1 for m in renderer.modules() if isinstance(m, Float32) and m.keep_float32) == 1  # conv_img
    assert isinstance(renderer, Renderer) and torch.equal(before, after)


def test_under_autocast_only_the_islands_compute_in_float32():
    """bfloat16 autocast on the CPU stands in for the GPU's float16: the convolutions get low-precision inputs, the
    normalisations and the output layer float32 ones."""
    networks = synthetic_networks(TINY, seed=0)
    renderer = keep_float32(build_served_module(networks, "tiny", "render_u8"))
    seen = {}

    def record(module, inputs):
        seen.setdefault(type(module).__name__, set()).add(inputs[0].dtype)

    for m in renderer.modules():
        if isinstance(m, (*NORMALIZATIONS, SpectralNormConv2d, torch.nn.Conv3d)):
            m.register_forward_pre_hook(record)
    kp = torch.from_numpy(np.random.default_rng(6).normal(0, 0.2, (1, 21, 3)).astype(np.float32))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        renderer(torch.from_numpy(crops(1, 7)), kp, kp * 1.1)
    assert seen["BatchNorm3d"] == {torch.float32} and seen["InstanceNorm2d"] == {torch.float32}
    assert torch.bfloat16 in seen["Conv3d"] | seen["SpectralNormConv2d"]


# --- served by the real tritonserver -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pytorch_server():
    """``liveportrait-export --target pytorch --device cpu`` (tiny, seed 0, LivePortrait models) served by
    tritonserver."""
    from export_scripts.cli import ExportRequest, run_export
    from orchestrator.triton_process import TritonProcess

    repository = BUILD / "repo-tiny-pytorch-cpu"
    run_export(ExportRequest(weights="synthetic", profile="tiny", target="pytorch", output=repository, device="cpu",
                             face_models=False), log=lambda *_: None)
    with TritonProcess(repository, log_file=BUILD / "tritonserver-pytorch.log") as server:
        yield server


def infer(url: str, model: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    import tritonclient.grpc as grpcclient

    from orchestrator.triton_client import infer_inputs

    client = grpcclient.InferenceServerClient(url)
    config = client.get_model_config(model).config
    result = client.infer(model, infer_inputs(inputs))
    return {t.name: result.as_numpy(t.name) for t in config.output}


def contract_inputs(url: str, model: str, batch: int = 3) -> dict[str, np.ndarray]:
    import tritonclient.grpc as grpcclient
    from tritonclient.grpc import model_config_pb2 as mc

    rng = np.random.default_rng(len(model))
    inputs = {}
    for t in grpcclient.InferenceServerClient(url).get_model_config(model).config.input:
        shape = (batch, *t.dims)
        if t.data_type == mc.TYPE_UINT8:
            inputs[t.name] = rng.integers(0, 256, shape, dtype=np.uint8)
        elif t.name.startswith("kp_"):
            inputs[t.name] = ((rng.random(shape) - 0.5) * 0.8).astype(np.float32)
        elif t.name.endswith("_ratio") or t.name == "image":
            inputs[t.name] = (0.5 * rng.random(shape)).astype(np.float32)
        else:
            inputs[t.name] = rng.standard_normal(shape).astype(np.float32)
    return inputs


def test_every_model_is_ready_on_its_configured_device(pytorch_server):
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(pytorch_server.grpc_url)
    states = {m.name: m.state for m in client.get_model_repository_index().models}
    assert states == dict.fromkeys(LIVEPORTRAIT_MODELS, "READY")
    for name in LIVEPORTRAIT_MODELS:
        config = client.get_model_config(name).config
        assert config.backend == "python" and config.instance_group[0].kind == config.instance_group[0].KIND_CPU
    assert client.get_model_config("render_i420").config.max_batch_size == 32


@pytest.mark.parametrize("model", LIVEPORTRAIT_MODELS)
def test_every_model_equals_the_onnxruntime_target(pytorch_server, triton_server, model):
    inputs = contract_inputs(pytorch_server.grpc_url, model)
    ours = infer(pytorch_server.grpc_url, model, inputs)
    reference = infer(triton_server.grpc_url, model, inputs)
    assert ours.keys() == reference.keys()
    for name, expected in reference.items():
        got = ours[name]
        assert got.shape == expected.shape and got.dtype == expected.dtype
        if got.dtype == np.uint8:
            assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1, name
        else:
            assert relative_l2(got, expected) <= 1e-4, name


def test_render_computes_the_appearance_once_per_source(pytorch_server):
    inputs = {**contract_inputs(pytorch_server.grpc_url, "render_i420", batch=1), "source_u8": crops(1, 99)}
    before = cache_counters(pytorch_server.metrics_url)
    first = infer(pytorch_server.grpc_url, "render_i420", inputs)["image_i420"]
    again = infer(pytorch_server.grpc_url, "render_i420", inputs)["image_i420"]
    after = cache_counters(pytorch_server.metrics_url)
    prefix = "liveportrait_feature_cache_"
    assert after[prefix + "misses_total"] - before.get(prefix + "misses_total", 0) == 1
    assert after[prefix + "hits_total"] - before.get(prefix + "hits_total", 0) == 1
    assert after[prefix + "bytes"] > 0 and np.array_equal(first, again)


def test_device_check_runs_on_the_cpu(tmp_path):
    """scripts/gpu_check.sh --device cpu: the device check's whole path (export, in-process studies, tritonserver,
    load levels) on the tiny profile, so the command a GPU session runs cannot rot."""
    result = subprocess.run(["bash", "scripts/gpu_check.sh", "--device", "cpu", "--seconds", "1",
                             "--concurrency", "2", "--out", str(tmp_path)],
                            cwd=REPO_ROOT, capture_output=True, text=True, env={**os.environ, "PYTHON": sys.executable})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = (tmp_path / "report.md").read_text()
    assert "| render_i420 through Triton |" in report and "| c2 |" in report
    assert "READY KIND_CPU" in (tmp_path / "report.json").read_text()
