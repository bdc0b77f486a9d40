"""Paste-back in YUV 4:2:0 (``pipeline.yuv_paste``) against the RGB paste-back the videos used before (the rendered
I420 crop -> RGB -> ``PasteBack`` -> the encoder's I420): both converted to RGB, compared by PSNR and the largest
level difference. The bounds below hold the measured figures with a margin:

* real content (the example portraits, each with another example pasted in, turned and at sub-pixel offsets):
  PSNR 47.7-56.0 dB against the RGB path as encoded (its I420), largest difference 6-40 levels and at most 0.21% of
  the values more than 8 levels apart: where a sharp colour edge of the crop is interpolated at half resolution
  (chroma) instead of after nearest-neighbour upsampling (against the RGB frames themselves, before the encoder's
  conversion: 46.4-51.3 dB, at most 42 levels);
* the official golden paste-back (synthetic weights: the crop is noise, a third of its I420 values outside the RGB
  gamut, which the RGB path clips and the YUV path keeps): PSNR 34.0 dB, up to 187 levels.

Outside the (even) box the frame is the source's own I420, bit for bit; the luma follows the RGB path closely.
"""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from orchestrator.media import FragmentedMp4Writer
from orchestrator.pipeline.paste import PasteBack, feathered_mask, paste_faces
from orchestrator.pipeline.yuv_paste import I420Canvas, I420PasteBack, planes, to_i420, to_rgb
from tests.golden import cases_with
from tests.test_paste_back import crop_to_image

EXAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "examples"
PORTRAITS = sorted((EXAMPLES / "source").glob("*.jpg")) + sorted((EXAMPLES / "driving").glob("*.jpg"))
REAL_MIN_PSNR = 45.0  # dB; measured 47.7 at the least
REAL_MAX_LEVELS = 48  # measured 40 at the most
REAL_MAX_SHARE_OVER_8 = 0.005  # values more than 8 levels apart; measured 0.21% at the most
GOLDEN_MIN_PSNR = 32.0  # dB; measured 34.0 (a noise crop)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255 ** 2 / mse)


def read_rgb(path: Path) -> np.ndarray:
    image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    return image[:image.shape[0] // 2 * 2, :image.shape[1] // 2 * 2]  # even sides, as source images are limited


def both_paths(source: np.ndarray, M: np.ndarray, mask: np.ndarray, crop_i420: np.ndarray):
    """(the RGB path's frame as the encoder gets it, the YUV path's frame), both I420."""
    h, w = source.shape[:2]
    rgb = PasteBack(source, M, mask)(to_rgb(crop_i420))
    i420 = to_i420(source)
    I420PasteBack(i420, M, mask, h, w).blend(i420, crop_i420, over=i420)
    return to_i420(rgb), i420


@pytest.mark.parametrize("path", PORTRAITS, ids=lambda p: p.name)
def test_on_real_portraits_the_yuv_blend_is_the_rgb_blend_within_the_measured_bound(path):
    source = read_rgb(path)
    other = read_rgb(PORTRAITS[(PORTRAITS.index(path) + 1) % len(PORTRAITS)])
    crop = to_i420(cv2.resize(other, (512, 512), interpolation=cv2.INTER_AREA))
    h, w = source.shape[:2]
    scale = min(h, w) / 512 * 0.6
    M = crop_to_image(w * 0.45 + 0.3, h * 0.4 + 0.7, scale, 0.2)
    rgb_path, yuv_path = both_paths(source, M, feathered_mask(), crop)
    a, b = to_rgb(rgb_path), to_rgb(yuv_path)
    assert psnr(a, b) >= REAL_MIN_PSNR
    difference = np.abs(a.astype(int) - b)
    assert difference.max() <= REAL_MAX_LEVELS
    assert np.mean(difference > 8) <= REAL_MAX_SHARE_OVER_8


@pytest.mark.parametrize("case", cases_with("crop"))
def test_on_the_golden_case_the_yuv_blend_is_the_rgb_blend_within_the_measured_bound(case):
    g = case.load("crop")
    source = g["in_crop_source_image"]
    source = source[:source.shape[0] // 2 * 2, :source.shape[1] // 2 * 2]
    rgb_path, yuv_path = both_paths(source, g["out_M_c2o"], g["in_mask_crop"], to_i420(g["in_paste_I_p"]))
    assert psnr(to_rgb(rgb_path), to_rgb(yuv_path)) >= GOLDEN_MIN_PSNR


@pytest.mark.parametrize("x,y", [(101.0, 51.0), (100.0, 50.0), (37.3, 80.7)])
def test_odd_positions_widen_the_box_to_even_coordinates_and_the_rest_is_the_source(x, y):
    source = read_rgb(EXAMPLES / "source" / "s1.jpg")
    crop = to_i420(cv2.resize(read_rgb(EXAMPLES / "source" / "s9.jpg"), (512, 512), interpolation=cv2.INTER_AREA))
    h, w = source.shape[:2]
    M = np.array([[1, 0, x], [0, 1, y], [0, 0, 1]], np.float32)  # the crop at (x, y), unscaled
    paste = I420PasteBack(to_i420(source), M, feathered_mask(), h, w)
    y0, y1, x0, x1 = paste.box
    assert all(v % 2 == 0 for v in paste.box)
    tight = PasteBack(source, M, feathered_mask()).box  # the RGB box: inside the even box, at most 1 px smaller
    ty0, ty1, tx0, tx1 = tight
    assert y0 <= ty0 <= y0 + 1 and y1 - 1 <= ty1 <= y1 and x0 <= tx0 <= x0 + 1 and x1 - 1 <= tx1 <= x1
    rgb_path, yuv_path = both_paths(source, M, feathered_mask(), crop)
    luma_rgb, luma_yuv = planes(rgb_path, h, w)[0], planes(yuv_path, h, w)[0]
    assert psnr(luma_rgb, luma_yuv) >= 55  # luma: the same warp; only the RGB round trip's rounding differs
    source_planes = planes(to_i420(source), h, w)
    chroma_box = (y0 // 2, y1 // 2, x0 // 2, x1 // 2)
    for plane, original, box in zip(planes(yuv_path, h, w), source_planes, [paste.box, chroma_box, chroma_box]):
        outside = np.ones(plane.shape, bool)
        outside[box[0]:box[1], box[2]:box[3]] = False
        assert np.array_equal(plane[outside], original[outside])
    assert psnr(to_rgb(rgb_path), to_rgb(yuv_path)) >= REAL_MIN_PSNR


def test_several_faces_in_reused_frames_follow_the_rgb_paste_back():
    source = read_rgb(EXAMPLES / "source" / "s22.jpg")
    h, w = source.shape[:2]
    places = [crop_to_image(300, 300, 0.8, 0.1), crop_to_image(520, 330, 0.7, -0.2), crop_to_image(80, 650, 0.6)]
    faces = [to_i420(cv2.resize(read_rgb(p), (512, 512), interpolation=cv2.INTER_AREA)) for p in PORTRAITS[:3]]
    canvas = I420Canvas(source, places, feathered_mask())
    first = [f[None] for f in faces]
    frames = canvas(first)
    expected = paste_faces([PasteBack(source, M, feathered_mask()) for M in places], [to_rgb(f) for f in faces])
    assert psnr(to_rgb(frames[0]), to_rgb(to_i420(expected))) >= REAL_MIN_PSNR
    kept = frames[0].copy()
    canvas([f[None, ::-1] for f in faces])  # the next chunk, written into the same buffer
    assert canvas(first)[0] is frames[0] and np.array_equal(frames[0], kept)


def test_the_encoder_takes_i420_frames_as_it_takes_rgb_ones_and_copies_them(tmp_path):
    rgb = [np.clip(np.add.outer(np.arange(48), np.arange(64))[..., None] * (1, 2, 3) + 5 * i, 0, 255)
           .astype(np.uint8) for i in range(5)]
    buffer = np.empty((72, 64), np.uint8)

    def reused(image):  # one I420 buffer for every frame: the encoder copies a frame when it is handed one
        buffer[...] = to_i420(image)
        return buffer

    outputs = {}
    for kind, convert in (("rgb", lambda image: image), ("i420", reused)):
        writer = FragmentedMp4Writer(64, 48, Fraction(25))
        data = b"".join(writer.write([convert(f)]) for f in rgb) + writer.close()
        (tmp_path / f"{kind}.mp4").write_bytes(data)
        with av.open(str(tmp_path / f"{kind}.mp4")) as container:
            outputs[kind] = [f.to_ndarray(format="yuv420p") for f in container.decode(video=0)]
    assert len(outputs["i420"]) == 5
    assert all(np.array_equal(a, b) for a, b in zip(outputs["rgb"], outputs["i420"]))
