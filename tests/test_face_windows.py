"""The window grid of the small-face search: it covers the image, every small face fits wholly in one window, and
faces cut by a window edge are recognised as such."""
from __future__ import annotations

import numpy as np
import pytest

from orchestrator.face.blazeface import Detection, Tile, in_tile_interior, shift, suppress, tiles

SHAPES = [(1280, 1280), (720, 1280), (872, 1000), (2000, 300), (161, 161)]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("level", [1, 2])
def test_every_face_up_to_half_a_window_lies_wholly_inside_one(shape, level):
    h, w = shape
    windows = tiles(h, w, level)
    if not windows:  # too small to split: the whole-image pass sees such faces
        assert max(h, w) / 2 ** level < 160
        return
    for t in windows:
        assert 0 <= t.x0 and t.x0 + t.width <= w and 0 <= t.y0 and t.y0 + t.height <= h
    side = max(max(t.width, t.height) for t in windows)
    face = min(side // 2, h, w)
    for y in np.linspace(0, h - face, 17):
        for x in np.linspace(0, w - face, 17):
            assert any(t.x0 <= x and x + face <= t.x0 + t.width and t.y0 <= y and y + face <= t.y0 + t.height
                       for t in windows), (x, y, face)


def test_window_side_halves_per_level_and_stops_at_the_minimum():
    assert {t.width for t in tiles(1280, 1280, 1)} == {640}
    assert {t.width for t in tiles(1280, 1280, 2)} == {320}
    assert len(tiles(1280, 1280, 1)) == 9 and len(tiles(1280, 1280, 2)) == 49
    assert {t.width for t in tiles(1280, 1280, 3)} == {160}  # the smallest window
    assert tiles(1280, 1280, 4) == [] and tiles(1280, 1280, 0) == []


def test_a_box_on_an_inner_window_edge_is_cut_but_one_on_the_image_edge_is_not():
    image = (1000, 1000)
    window = Tile(250, 250, 500, 500)
    at = lambda x1, y1, x2, y2: shift(Detection(np.array([x1, y1, x2, y2], float), None, 0.9), window)  # noqa: E731
    assert in_tile_interior(at(100, 100, 200, 200), window, image)
    assert not in_tile_interior(at(0, 100, 100, 200), window, image)  # cut by the window's left edge
    assert not in_tile_interior(at(420, 100, 499, 200), window, image)  # and by its right edge
    corner = Tile(0, 0, 500, 500)
    inner_edge = shift(Detection(np.array([0, 0, 80, 80.0]), None, 0.9), corner)
    assert in_tile_interior(inner_edge, corner, image)  # the window's edge is the image's


def test_overlapping_detections_from_neighbouring_windows_collapse_to_the_best():
    a = Detection(np.array([100, 100, 200, 200.0]), None, 0.8)
    b = Detection(np.array([104, 98, 203, 201.0]), None, 0.95)
    c = Detection(np.array([600, 600, 700, 700.0]), None, 0.7)
    kept = suppress([a, b, c], 0.3)
    assert [d.score for d in kept] == [0.95, 0.7]
