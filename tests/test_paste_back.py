"""Paste-back inside the mask's box (``pipeline.paste.PasteBack``) against the official full-image paste-back
(``face.geometry.paste_back``, checked against the official golden in test_face_geometry.py): the same frames, up to
warpAffine's rounding of the translated matrix (``golden.assert_warped_close``), for a face inside the image, at its
border, partly outside it, wholly outside it, and several faces in one frame; reused output frames give the same
frames as new ones."""
from __future__ import annotations

import numpy as np
import pytest

from orchestrator.face import geometry
from orchestrator.pipeline.paste import EMPTY, PasteBack, feathered_mask, paste_faces
from tests.golden import assert_warped_close, cases_with


def crop_to_image(x: float, y: float, scale: float = 0.5, angle: float = 0.0) -> np.ndarray:
    """crop -> image: the 512 crop scaled by ``scale``, turned by ``angle`` (radians) about its centre, its centre
    at (x, y)."""
    c, s = np.cos(angle) * scale, np.sin(angle) * scale
    return np.array([[c, -s, x - 256 * (c - s)], [s, c, y - 256 * (s + c)], [0, 0, 1]], np.float32)


def full_image_paste(crop: np.ndarray, M: np.ndarray, frame: np.ndarray, mask_crop: np.ndarray) -> np.ndarray:
    return geometry.paste_back(crop, M, frame, geometry.paste_back_mask(mask_crop, M, frame.shape[:2]))


def images(seed: int, shape=(360, 480, 3)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A source image and two crops with smooth content and fine detail (a gradient plus noise)."""
    rng = np.random.default_rng(seed)
    h, w = shape[:2]
    ramp = np.add.outer(np.linspace(0, 160, h), np.linspace(0, 80, w))[..., None]
    source = np.clip(ramp + rng.normal(0, 20, shape), 0, 255).astype(np.uint8)
    crops = [rng.integers(0, 256, (512, 512, 3), np.uint8) for _ in range(2)]
    return source, crops[0], crops[1]


PLACES = {
    "inside": crop_to_image(240, 180, 0.5, 0.3),
    "at the left border": crop_to_image(128, 180, 0.5),  # the mask's edge on the image's first column
    "partly outside, top left": crop_to_image(40, 30, 0.6, -0.4),
    "partly outside, bottom right": crop_to_image(460, 350, 0.7, 0.9),
    "larger than the image": crop_to_image(240, 180, 1.6, 0.2),
}


@pytest.mark.parametrize("place", PLACES)
def test_the_box_paste_back_is_the_full_image_paste_back(place):
    source, crop, _ = images(1)
    M = PLACES[place]
    paste = PasteBack(source, M, feathered_mask())
    assert_warped_close(paste.full_mask(), geometry.paste_back_mask(feathered_mask(), M, source.shape[:2]), 255)
    assert_warped_close(paste(crop), full_image_paste(crop, M, source, feathered_mask()))


def test_the_box_is_the_masks_bounding_box_and_outside_it_is_the_source():
    source, crop, _ = images(2)
    M = PLACES["partly outside, top left"]
    paste = PasteBack(source, M, feathered_mask())
    full = geometry.paste_back_mask(feathered_mask(), M, source.shape[:2])
    rows, cols = np.nonzero(full.max(axis=2))
    y0, y1, x0, x1 = paste.box
    assert abs(y0 - rows.min()) <= 1 and abs(y1 - rows.max() - 1) <= 1
    assert abs(x0 - cols.min()) <= 1 and abs(x1 - cols.max() - 1) <= 1
    frame = paste(crop)
    outside = np.ones(source.shape[:2], bool)
    outside[y0:y1, x0:x1] = False
    assert np.array_equal(frame[outside], source[outside])


def test_a_face_wholly_outside_the_image_leaves_the_source():
    source, crop, _ = images(3)
    paste = PasteBack(source, crop_to_image(-400, -300, 0.5), feathered_mask())
    assert paste.box == EMPTY
    assert np.array_equal(paste(crop), source)


@pytest.mark.parametrize("case", cases_with("crop"))
def test_the_official_mask_and_crop_pasted_in_the_box(case):
    g = case.load("crop")
    image, M, mask, crop = g["in_crop_source_image"], g["out_M_c2o"], g["in_mask_crop"], g["in_paste_I_p"]
    assert_warped_close(PasteBack(image, M, mask)(crop), full_image_paste(crop, M, image, mask))


def test_several_faces_are_the_full_image_paste_backs_in_order_and_reused_frames_change_nothing():
    source, first_crop, second_crop = images(4)
    places = [PLACES["partly outside, top left"], crop_to_image(170, 150, 0.5, 0.2), PLACES["inside"]]
    crops = [first_crop, second_crop, first_crop[::-1]]
    pastes = [PasteBack(source, M, feathered_mask()) for M in places]
    expected = source
    for M, crop in zip(places, crops):  # each face blended over the frame so far (overlapping masks)
        expected = full_image_paste(crop, M, expected, feathered_mask())
    frame = paste_faces(pastes, crops)
    assert_warped_close(frame, expected)
    other = paste_faces(pastes, [c[:, ::-1] for c in crops])  # the next frame: other crops
    again = paste_faces(pastes, crops, out=other)  # written over the previous frame
    assert again is other and np.array_equal(again, frame)


def test_a_reused_frame_of_one_face_equals_a_new_one():
    source, crop, other = images(5)
    paste = PasteBack(source, PLACES["inside"], feathered_mask())
    frame = paste(other)
    assert np.array_equal(paste(crop, out=frame), paste(crop))
