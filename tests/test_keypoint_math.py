"""Keypoint math, ratio combination and paste-back against every official golden case (rel-L2 <= 1e-5)."""
from __future__ import annotations

import numpy as np
import pytest

from orchestrator.face.ratios import official_ratios
from orchestrator.keypoints import (KeypointComposer, KeypointOptions, Motion, combined_eye_ratio, combined_lip_ratio,
                                    convex_hull_volume, motion_multiplier, rotation_matrix, source_keypoints)
from orchestrator.pipeline.paste import PasteBack, feathered_mask

from golden import assert_warped_close, cases_with

TOL = 1e-5


def rel_l2(ours, golden) -> float:
    ours, golden = np.asarray(ours, np.float64), np.asarray(golden, np.float64)
    assert ours.size == golden.size, (ours.shape, golden.shape)
    return float(np.linalg.norm(ours.reshape(-1) - golden.reshape(-1)) / max(np.linalg.norm(golden), 1e-30))


@pytest.fixture(scope="module", params=cases_with("relative_motion"))
def relative(request):
    return request.param.load("relative_motion")


def golden_source(g):
    return source_keypoints({name: g[f"out_source_kpinfo_{name}"] for name in
                             ("pitch", "yaw", "roll", "t", "exp", "scale", "kp")})


def golden_template(g) -> Motion:
    n = len(g["in_template_frames_scale"])
    return Motion(g["in_template_frames_scale"].reshape(n), g["in_template_frames_R"].reshape(n, 3, 3),
                  g["in_template_frames_exp"].reshape(n, 21, 3), g["in_template_frames_t"].reshape(n, 3))


def test_source_rotation_and_keypoints(relative):
    source = golden_source(relative)
    assert rel_l2(source.R, relative["out_source_R"]) <= TOL
    assert rel_l2(source.x_s, relative["out_x_s"]) <= TOL


@pytest.mark.parametrize("case", cases_with("motion"))
def test_rotation_matrix_on_large_angles(case):
    g = case.load("motion")
    angles = g["in_rot_test_angles_deg"]
    assert rel_l2(rotation_matrix(angles[:, 0], angles[:, 1], angles[:, 2]), g["out_rot_test_R"]) <= TOL


def test_relative_motion_per_frame_quantities(relative):
    composer = KeypointComposer(golden_source(relative), KeypointOptions(), driving_is_video=True)
    template = golden_template(relative)
    composer.compose(template[0:1])  # fixes the reference frame
    new = composer.new_motion(template)
    assert rel_l2(new.R, relative["out_R_new"]) <= TOL
    assert rel_l2(new.exp, relative["out_delta_new"]) <= TOL
    assert rel_l2(new.scale, relative["out_scale_new"]) <= TOL
    assert rel_l2(new.t, relative["out_t_new"]) <= TOL
    assert rel_l2(composer.raw(template), relative["out_x_d_i_new_raw"]) <= TOL


def test_expression_friendly_composition_and_final_keypoints(relative):
    composer = KeypointComposer(golden_source(relative), KeypointOptions(), driving_is_video=True)
    template = golden_template(relative)
    before = np.concatenate([composer.compose(template[i:i + 3]) for i in range(0, len(template), 3)])
    assert composer.multiplier == pytest.approx(float(relative["out_motion_multiplier"]), rel=1e-9)
    assert rel_l2(before, relative["out_x_d_i_new_before_stitching"]) <= TOL
    final = composer.finalize(relative["out_x_d_i_new_after_stitching"].reshape(-1, 21, 3))
    assert rel_l2(final, relative["out_x_d_i_new_final"]) <= TOL


def test_driving_multiplier_scales_the_motion_around_the_source(relative):
    source = golden_source(relative)
    composer = KeypointComposer(source, KeypointOptions(driving_multiplier=1.5), driving_is_video=True)
    after = relative["out_x_d_i_new_after_stitching"].reshape(-1, 21, 3)
    np.testing.assert_allclose(composer.finalize(after) - source.x_s, 1.5 * (after - source.x_s), atol=1e-6)


@pytest.mark.parametrize("case", cases_with("stitching"))
def test_convex_hull_multiplier_on_a_non_trivial_pair(case):
    g = case.load("stitching")
    expected = float(g["out_motion_multiplier_source_vs_stitched"])
    ours = motion_multiplier(g["in_kp_source"][0], g["out_kp_driving_stitched"][0])
    assert ours == pytest.approx(expected, rel=1e-9)


def test_convex_hull_volume_of_known_solids():
    cube = np.array([[x, y, z] for x in (0, 2) for y in (0, 2) for z in (0, 2)], float)  # coplanar faces
    assert convex_hull_volume(np.vstack([cube, [[1, 1, 1]]])) == pytest.approx(8.0)
    tetra = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], float)
    assert convex_hull_volume(tetra) == pytest.approx(1 / 6)


@pytest.mark.parametrize("case", cases_with("stitching"))
def test_eye_and_lip_ratio_combination(case):
    g = case.load("stitching")
    eyes, lip = official_ratios(g["in_lmk203"])
    assert rel_l2(combined_eye_ratio(tuple(eyes), g["in_c_d_eyes_i"]), g["out_combined_eye_ratio"]) <= TOL
    assert rel_l2(combined_lip_ratio(lip, g["in_c_d_lip_i"]), g["out_combined_lip_ratio"]) <= TOL
    assert rel_l2(combined_lip_ratio(lip, np.zeros(1)), g["out_combined_lip_ratio_normalize"]) <= TOL


@pytest.mark.parametrize("case", cases_with("crop"))
def test_paste_back_with_the_official_mask_matches(case):
    """Exact but for warpAffine's rounding between OpenCV releases (golden.assert_warped_close says how much)."""
    g = case.load("crop")
    paste = PasteBack(g["in_crop_source_image"], g["out_M_c2o"], g["in_mask_crop"])
    assert_warped_close(paste.full_mask(), g["out_mask_ori_float"], scale=255)
    assert_warped_close(paste(g["in_paste_I_p"]), g["out_pasted_back"])


def test_generated_mask_is_feathered():
    mask = feathered_mask(512, feather=16)[:, :, 0]
    assert mask.shape == (512, 512)
    assert mask[256, 256] == 255 and mask[0, 0] == 0 and mask[0, 256] < 10
    assert (mask[16:-16, 16:-16] == 255).all()
    assert np.all(np.diff(mask[256, :20].astype(int)) >= 0)  # monotone ramp from the border inwards
