"""liveportrait-export: ONNX files that reproduce the official outputs, batch invariance, a correct repository."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from export_scripts import model_repository as repo
from export_scripts.build import build_networks
from export_scripts.cli import ExportRequest, run_export
from export_scripts.onnx_export import (ExportVerificationError, example_inputs, export_onnx, relative_l2,
                                        verify_onnx)
from export_scripts.profiles import FULL, TINY
from export_scripts.served_models import served_models
from export_scripts.serving_heads import serving_modules
from export_scripts.synthetic_weights import load_synthetic_weights

GOLDEN_TOLERANCE = 1e-4
REPO_ROOT = Path(__file__).resolve().parents[1]


def session(repository: Path, model: str) -> ort.InferenceSession:
    return ort.InferenceSession(str(repository / model / "1" / "model.onnx"), providers=["CPUExecutionProvider"])


@pytest.mark.full
@pytest.mark.parametrize("which", ["source", "driving"])
def test_motion_extractor_matches_official(full_golden_repository, golden, which):
    g = golden["motion"]
    outputs = session(full_golden_repository, "motion_extractor").run(None, {"image": g[f"in_{which}_input"]})
    names = [o.name for o in session(full_golden_repository, "motion_extractor").get_outputs()]
    for name, value in zip(names, outputs):
        # the degrees etc. are the official get_kp_info; pitch_bins etc. the raw pose logits they come from
        key = f"out_{which}_raw_{name.removesuffix('_bins')}" if name.endswith("_bins") else f"out_{which}_kpinfo_{name}"
        assert relative_l2(value, g[key]) <= GOLDEN_TOLERANCE, name


@pytest.mark.full
def test_appearance_feature_extractor_matches_official(full_golden_repository, golden):
    g = golden["appearance"]
    (feature,) = session(full_golden_repository, "appearance_feature_extractor").run(None, {"image": g["in_source_input"]})
    assert feature.shape == (1, 32, 16, 64, 64)
    assert relative_l2(feature, g["out_feature_3d"]) <= GOLDEN_TOLERANCE


@pytest.mark.full
def test_stitching_and_retargeting_match_official(full_golden_repository, golden):
    g = golden["stitching"]
    kp_s, kp_d = g["in_kp_source"], g["in_kp_driving"]
    (stitched,) = session(full_golden_repository, "stitching").run(None, {"kp_source": kp_s, "kp_driving": kp_d})
    (eye,) = session(full_golden_repository, "retarget_eye").run(None, {"kp_source": kp_s, "eye_ratio": g["in_eye_ratio_fixed"]})
    (lip,) = session(full_golden_repository, "retarget_lip").run(None, {"kp_source": kp_s, "lip_ratio": g["in_lip_ratio_fixed"]})
    assert relative_l2(stitched, g["out_kp_driving_stitched"]) <= GOLDEN_TOLERANCE
    assert relative_l2(eye, g["out_eye_delta_fixed"]) <= GOLDEN_TOLERANCE
    assert relative_l2(lip, g["out_lip_delta_fixed"]) <= GOLDEN_TOLERANCE


@pytest.mark.full
def test_warping_spade_matches_official(full_golden_repository, golden):
    feeds = {"feature_3d": golden["appearance"]["out_feature_3d"], "kp_source": golden["warp"]["in_kp_source"],
             "kp_driving": golden["warp"]["in_kp_driving"]}
    (image,) = session(full_golden_repository, "warping_spade").run(None, feeds)
    assert image.shape == (1, 3, 512, 512)
    assert relative_l2(image, golden["decode"]["out_image"]) <= GOLDEN_TOLERANCE
    (image_u8,) = session(full_golden_repository, "postprocess_image").run(None, {"image": image})
    difference = np.abs(image_u8.astype(int) - golden["decode"]["out_image_uint8"].astype(int))
    # float noise of ~1e-6 moves a truncated pixel by one level only where it lies on a level boundary
    assert difference.max() <= 1 and np.mean(difference > 0) < 0.01


@pytest.mark.full
def test_full_repository_is_labelled_with_official_weights(full_golden_repository):
    config = repo.parse_config(full_golden_repository / "warping_spade" / "config.pbtxt")
    assert config.parameters["weights"].string_value.startswith("official (")
    assert config.parameters["profile"].string_value == "full"


@pytest.fixture(scope="session")
def tiny_modules():
    networks = build_networks(TINY)
    load_synthetic_weights(networks, seed=0)
    return serving_modules(networks)


@pytest.mark.parametrize("spec", served_models(TINY), ids=lambda s: s.name)
def test_a_batch_of_four_equals_four_single_runs(tiny_cpu_repository, spec):
    model = session(tiny_cpu_repository, spec.name)
    batch = example_inputs(spec, 4, seed=7)
    feeds = {t.name: x.numpy() for t, x in zip(spec.inputs, batch)}
    together = model.run(None, feeds)
    for i in range(4):
        alone = model.run(None, {k: v[i:i + 1] for k, v in feeds.items()})
        for t, whole, single in zip(spec.outputs, together, alone):
            if t.dtype == "UINT8":
                assert np.abs(whole[i:i + 1].astype(int) - single.astype(int)).max() <= 1, t.name
            else:
                assert relative_l2(whole[i:i + 1], single) <= 1e-5, t.name


def test_tiny_repository_is_labelled_synthetic(tiny_cpu_repository):
    for spec in served_models(TINY):
        config = repo.parse_config(tiny_cpu_repository / spec.name / "config.pbtxt")
        assert config.parameters["weights"].string_value == "synthetic (seed 0, profile tiny)"


def test_export_is_idempotent(tiny_cpu_repository):
    onnx = tiny_cpu_repository / "warping_spade" / "1" / "model.onnx"
    before = onnx.stat().st_mtime_ns
    lines = []
    run_export(ExportRequest(weights="synthetic", profile="tiny", target="cpu", output=tiny_cpu_repository),
               log=lines.append)
    assert onnx.stat().st_mtime_ns == before
    assert "up to date" in lines[0]


def test_an_export_that_does_not_reproduce_pytorch_is_refused(tiny_modules, tmp_path):
    spec = next(s for s in served_models(TINY) if s.name == "stitching")
    path = tmp_path / "stitching.onnx"
    export_onnx(tiny_modules["stitching"], spec, path)
    other = build_networks(TINY)
    load_synthetic_weights(other, seed=1)
    with pytest.raises(ExportVerificationError, match="stitching: ONNX output 'kp_driving_stitched' differs"):
        verify_onnx(serving_modules(other)["stitching"], spec, path)


def test_an_export_with_the_traced_batch_size_fixed_in_its_graph_is_refused(tmp_path):
    from torch import nn

    from export_scripts.model_spec import ServedModel, TensorSpec

    class FixedBatch(nn.Module):
        def forward(self, x):
            return x.reshape(int(x.shape[0]), -1).sum(dim=1, keepdim=True)  # int(): the tracer keeps the number

    spec = ServedModel("fixed_batch", (TensorSpec("x", (3, 4)),), (TensorSpec("y", (1,)),))
    path = tmp_path / "fixed.onnx"
    export_onnx(FixedBatch(), spec, path)  # traced at batch 2
    refusal = r"fixed_batch: ONNX output 'y' has the shape \[2, 1\] at batch 1, PyTorch's \[1, 1\]"
    with pytest.raises(ExportVerificationError, match=refusal):
        verify_onnx(FixedBatch(), spec, path)


def test_cli_reports_a_bad_weights_directory(tmp_path):
    result = subprocess.run([sys.executable, "-m", "export_scripts.cli", "--weights", str(tmp_path), "--profile", "full",
                             "--target", "cpu", "--output", str(tmp_path / "out")], capture_output=True, text=True)
    assert result.returncode == 2
    assert "checkpoint file not found" in result.stderr and "appearance_feature_extractor.pth" in result.stderr


def test_gpu_target_configs_parse_as_triton_model_config(tmp_path):
    parameters = {"weights": "synthetic (seed 0, profile full)"}
    for spec in served_models(FULL):
        config = repo.served_model_config(spec, "gpu", parameters)
        path = tmp_path / f"{spec.name}.pbtxt"
        path.write_text(repo.config_text(config, spec.description))
        parsed = repo.parse_config(path)
        assert parsed.backend == "onnxruntime"
        assert parsed.instance_group[0].kind == parsed.instance_group[0].KIND_GPU
        assert parsed.max_batch_size >= 8
        policy = parsed.dynamic_batching.default_queue_policy
        assert policy.timeout_action == policy.REJECT and policy.default_timeout_microseconds > 0
        assert parsed.dynamic_batching.default_queue_policy.max_queue_size > 0
        assert list(parsed.version_policy.specific.versions) == [1]
        assert parsed.model_warmup, "GPU models are warmed up before they report ready"
        accelerators = parsed.optimization.execution_accelerators.gpu_execution_accelerator
        assert accelerators[0].name == "tensorrt" and accelerators[0].parameters["precision_mode"] == "FP16"
        assert accelerators[0].parameters["trt_layer_norm_fp32_fallback"] == "1"
    warping = (REPO_ROOT / "model_repository" / "gpu" / "warping_spade" / "config.pbtxt").read_text()
    assert "gathers" in warping and "--grid-sampler native" in warping


@pytest.mark.parametrize("target", repo.TARGETS)
def test_every_target_shares_names_tensors_and_batching(target):
    """Same contract everywhere; only the pytorch target widens its render path's batches to 32."""
    cpu = repo.reference_configs(FULL, "cpu")
    other = repo.reference_configs(FULL, target)
    assert cpu.keys() == other.keys()
    for name in cpu:
        ours, theirs = (text_format.Parse(t, mc.ModelConfig()) for t in (cpu[name], other[name]))
        assert ours.input == theirs.input and ours.output == theirs.output
        if target == "pytorch" and name in repo.TORCH_RENDER_PATH:
            assert theirs.max_batch_size == 32 and ours.max_batch_size == 8
        elif ours.platform != "ensemble":
            assert ours.dynamic_batching == theirs.dynamic_batching
            assert ours.max_batch_size == theirs.max_batch_size


def test_pytorch_target_fuses_the_ensembles_and_keeps_the_face_models_on_onnx():
    configs = {name: text_format.Parse(text, mc.ModelConfig())
               for name, text in repo.reference_configs(FULL, "pytorch").items()}
    for name in ("render_u8", "render_i420", "motion_extractor_u8"):
        assert configs[name].backend == "python" and not configs[name].platform
    assert configs["render_i420"].parameters["compile"].string_value == "reduce-overhead"
    assert configs["render_i420"].parameters["precision"].string_value == "fp16"
    assert configs["stitching"].parameters["precision"].string_value == "fp32"
    kinds = {name: c.instance_group[0].kind for name, c in configs.items()}
    assert kinds["render_i420"] == mc.ModelInstanceGroup.KIND_GPU
    assert kinds["face_detector"] == mc.ModelInstanceGroup.KIND_CPU
    assert "onnx_file" in configs["face_detector"].parameters


def test_gpu_target_exports_warping_without_grid_sample_by_default(tmp_path):
    """--target gpu writes the gather-based volume sampling (one TensorRT engine); --grid-sampler native keeps
    GridSample."""
    import onnx

    for target, sampler, expect_grid_sample in (("gpu", None, False), ("gpu", "native", True), ("cpu", None, True)):
        request = ExportRequest(weights="synthetic", profile="tiny", target=target, output=tmp_path / f"{target}{sampler}",
                                face_models=False, grid_sampler=sampler)
        run_export(request, log=lambda *_: None)
        graph = onnx.load(str(request.output / "warping_spade" / "1" / "model.onnx")).graph
        assert any(n.op_type == "GridSample" for n in graph.node) == expect_grid_sample


@pytest.mark.parametrize("target", repo.TARGETS)
def test_committed_reference_configs_are_current(target):
    """model_repository/<target>/ holds the generated full-profile configs for review; regenerate with
    ``liveportrait-export --configs-only --profile full --target <target> --output model_repository/<target>``."""
    folder = REPO_ROOT / "model_repository" / target
    expected = repo.reference_configs(FULL, target)
    committed = {p.parent.name: p.read_text() for p in folder.glob("*/config.pbtxt")}
    assert committed == expected


def test_i420_output_decodes_to_the_rgb_output_of_a_natural_image(tiny_cpu_repository):
    """The serving path returns planar YUV 4:2:0; OpenCV's I420 decoder gives back the RGB levels up to chroma
    subsampling (a pixel or two of colour bleeding at sharp edges, invisible after the yuv420p video encode)."""
    import cv2
    from skimage.data import astronaut

    image = cv2.resize(astronaut(), (512, 512)).astype(np.float32).transpose(2, 0, 1)[None] / 255.0
    (rgb,) = session(tiny_cpu_repository, "postprocess_image").run(None, {"image": image})
    (i420,) = session(tiny_cpu_repository, "postprocess_image_i420").run(None, {"image": image})
    assert i420.shape == (1, 768, 512) and i420.dtype == np.uint8
    decoded = cv2.cvtColor(i420[0], cv2.COLOR_YUV2RGB_I420)
    difference = np.abs(decoded.astype(int) - rgb[0].astype(int))
    assert difference.mean() < 2.0
    assert np.median(difference) <= 1
