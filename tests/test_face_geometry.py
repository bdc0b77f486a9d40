"""The LivePortrait crop geometry equals the official implementation on every golden case (crop stage)."""
from __future__ import annotations


import numpy as np
import pytest

from orchestrator.face import geometry
from orchestrator.face.mesh_layout import MESH_TO_68

from golden import assert_warped_close, cases_with

TOL = 1e-4


@pytest.fixture(scope="module", params=cases_with("crop"))
def golden(request):
    return request.param.load("crop")


def test_anchor_points_and_rect_match_official(golden):
    lmk = golden["in_lmk106"]
    np.testing.assert_allclose(geometry.anchor_points(lmk), golden["out_pt2"], atol=TOL)
    rect = geometry.crop_rect(lmk, scale=2.3, vx_ratio=0.0, vy_ratio=-0.125)
    np.testing.assert_allclose(rect.center, golden["out_rect_center"], atol=TOL)
    assert abs(rect.size - float(golden["out_rect_size"][0])) < TOL
    assert abs(rect.angle - float(golden["out_rect_angle_rad"])) < TOL


def test_crop_matrices_and_images_match_official(golden):
    image, lmk = golden["in_crop_source_image"], golden["in_lmk106"]
    t = geometry.crop_transform(lmk, geometry.CropConfig(dsize=512, scale=2.3, vy_ratio=-0.125))
    np.testing.assert_allclose(t.M_o2c, golden["out_M_o2c"], atol=TOL)
    np.testing.assert_allclose(t.M_c2o, golden["out_M_c2o"], atol=TOL)
    np.testing.assert_allclose(geometry.transform_points(lmk, t.M_o2c), golden["out_pt_crop"], atol=1e-3)
    crop = geometry.warp_crop(image, t)
    assert np.abs(crop.astype(int) - golden["out_img_crop"]).max() <= 1
    assert np.abs(geometry.resize_crop(crop).astype(int) - golden["out_img_crop_256x256"]).max() <= 1


def test_paste_back_matches_official(golden):
    image = golden["in_crop_source_image"]
    t = geometry.crop_transform(golden["in_lmk106"])
    mask = geometry.paste_back_mask(golden["in_mask_crop"], t.M_c2o, image.shape[:2])
    assert_warped_close(mask, golden["out_mask_ori_float"], scale=255)
    pasted = geometry.paste_back(golden["in_paste_I_p"], t.M_c2o, image, mask)
    assert_warped_close(pasted, golden["out_pasted_back"])


def test_crop_cancels_roll():
    """A face tilted by 30 degrees ends upright in the crop: eye centre straight above the mouth centre."""
    pts = np.array([[100, 100], [160, 100], [130, 150], [110, 180], [150, 180]], np.float32)  # 5-point layout
    angle = np.deg2rad(30)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]], np.float32)
    tilted = (pts - 130) @ rot.T + 300
    t = geometry.crop_transform(tilted, geometry.CropConfig(scale=4.0))
    eye, mouth = geometry.transform_points(geometry.anchor_points(tilted), t.M_o2c)
    assert abs(eye[0] - mouth[0]) < 1e-3 and eye[1] < mouth[1]
    assert abs(eye[0] - 256) < 1e-3  # centred horizontally
    np.testing.assert_allclose(t.M_o2c @ t.M_c2o, np.eye(3), atol=1e-4)


def test_unknown_point_counts_are_refused_not_misread():
    with pytest.raises(ValueError, match="468"):
        geometry.anchor_points(np.zeros((468, 2)))


def test_mesh_to_68_mapping_is_a_valid_layout():
    assert MESH_TO_68.shape == (68,) and len(set(MESH_TO_68.tolist())) == 68 and MESH_TO_68.max() < 468
