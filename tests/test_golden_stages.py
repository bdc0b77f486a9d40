"""Stage by stage against every complete golden case (GOLDEN.md sections 6 and 8), beyond the per-model checks of
test_export.py: the prepared inputs, the raw motion-extractor outputs and the transformed keypoints, the warping
module's intermediate outputs and the decoder alone (PyTorch networks loaded from the official-layout checkpoints),
the retargeting deltas the pipeline combines, and the official template pipeline's decoded frame through the served
models chained as the render ensemble chains them. Thresholds: GOLDEN.md section 8."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from export_scripts.networks.motion_extractor import bins_to_degrees
from export_scripts.onnx_export import relative_l2
from orchestrator.keypoints import source_keypoints

pytestmark = pytest.mark.full

MOTION = ("pitch", "yaw", "roll", "t", "exp", "scale", "kp")


def run(repository: Path, model: str, **feeds: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(str(repository / model / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def level_difference(ours: np.ndarray, theirs: np.ndarray) -> np.ndarray:
    return np.abs(ours.astype(int) - theirs.astype(int))


@pytest.mark.parametrize("which", ["source", "driving"])
def test_served_preprocessing_prepares_the_official_network_input(full_golden_repository, golden, which):
    g = golden["inputs"]
    (prepared,) = run(full_golden_repository, "preprocess_image", image_u8=g[f"in_{which}_rgb_256"][None])
    np.testing.assert_array_equal(prepared, g[f"out_{which}_input"])


@pytest.mark.parametrize("which", ["source", "driving"])
def test_raw_motion_outputs_and_transformed_keypoints(full_golden_networks, golden, which):
    g = golden["motion"]
    with torch.no_grad():
        raw = full_golden_networks.motion_extractor(torch.from_numpy(g[f"in_{which}_input"]))
    for name in MOTION:
        assert relative_l2(raw[name].numpy(), g[f"out_{which}_raw_{name}"]) <= 1e-5, name
    # the pipeline's keypoint transform, fed with the official refined outputs
    keypoints = source_keypoints({name: g[f"out_{which}_kpinfo_{name}"] for name in MOTION})
    assert relative_l2(keypoints.R, g[f"out_{which}_R"]) <= 1e-6
    assert relative_l2(keypoints.x_s, g[f"out_{which}_kp_transformed"]) <= 1e-6


def test_pose_bins_to_degrees(golden):
    g = golden["motion"]
    degrees = bins_to_degrees(torch.from_numpy(g["in_headpose_test_logits"])).numpy()
    assert relative_l2(degrees, g["out_headpose_test_degree"]) <= 1e-6


def test_warping_module_intermediates_and_decoder_alone(full_golden_networks, golden):
    warp, feature_3d = golden["warp"], golden["appearance"]["out_feature_3d"]
    with torch.no_grad():
        out = full_golden_networks.warping_module(torch.from_numpy(feature_3d), torch.from_numpy(warp["in_kp_driving"]),
                                                  torch.from_numpy(warp["in_kp_source"]))
        image = full_golden_networks.spade_generator(torch.from_numpy(golden["decode"]["in_warp_out"]))
    assert relative_l2(out["deformation"].numpy(), warp["out_warp_deformation"]) <= 1e-5
    assert relative_l2(out["mask"].numpy(), warp["out_dense_motion_mask"]) <= 1e-5
    assert relative_l2(out["occlusion_map"].numpy(), warp["out_warp_occlusion_map"]) <= 1e-5
    assert relative_l2(out["out"].numpy(), warp["out_warp_out"]) <= 1e-5
    assert relative_l2(image.numpy(), golden["decode"]["out_image"]) <= 1e-4


def test_retargeting_deltas_the_pipeline_adds(full_golden_repository, golden):
    g = golden["stitching"]
    x_s = g["in_kp_source"]
    (eye,) = run(full_golden_repository, "retarget_eye", kp_source=x_s, eye_ratio=g["out_combined_eye_ratio"])
    (lip,) = run(full_golden_repository, "retarget_lip", kp_source=x_s, lip_ratio=g["out_combined_lip_ratio"])
    (normalize,) = run(full_golden_repository, "retarget_lip", kp_source=x_s,
                       lip_ratio=g["out_combined_lip_ratio_normalize"])
    assert relative_l2(eye, g["out_eye_delta_combined"]) <= 1e-5
    assert relative_l2(lip, g["out_lip_delta_combined"]) <= 1e-5
    assert relative_l2(normalize, g["out_lip_delta_normalize"]) <= 1e-5


def test_template_pipeline_frame_through_the_served_models(full_golden_repository, golden):
    """execute() with a source image and a template: stitch all ten frames in one batch, then render frame 9 the way
    the render ensemble does (preprocess -> appearance -> warping_spade -> postprocess) from the 256 px source."""
    g = golden["relative_motion"]
    repo = full_golden_repository
    x_s = g["out_x_s"]
    before = g["out_x_d_i_new_before_stitching"].reshape(-1, 21, 3)
    (stitched,) = run(repo, "stitching", kp_source=np.repeat(x_s, len(before), axis=0), kp_driving=before)
    assert relative_l2(stitched, g["out_x_d_i_new_after_stitching"].reshape(-1, 21, 3)) <= 1e-5
    (source,) = run(repo, "preprocess_image", image_u8=g["in_source_rgb_256"][None])
    motion = dict(zip(MOTION, run(repo, "motion_extractor", image=source)))
    assert relative_l2(source_keypoints(motion).x_s, x_s) <= 1e-5
    (feature_3d,) = run(repo, "appearance_feature_extractor", image=source)
    (image,) = run(repo, "warping_spade", feature_3d=feature_3d, kp_source=x_s,
                   kp_driving=g["out_x_d_i_new_final"][9])
    assert relative_l2(image, g["out_decoded_image_frame"]) <= 1e-4
    (image_u8,) = run(repo, "postprocess_image", image=image)
    difference = level_difference(image_u8, g["out_decoded_image_frame_uint8"])
    assert difference.max() <= 1 and np.mean(difference > 0) < 0.01
