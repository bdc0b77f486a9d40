"""The official face stack path (face_stack: official), with generated stand-ins for the user-supplied files."""
from __future__ import annotations

import asyncio

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from export_scripts.face_models import face_served_models
from export_scripts.face_models.official import (DETECTOR_FILE, export_official_models, official_files_present)
from export_scripts.face_models.standins import (STANDIN_EYE_RATIOS, STANDIN_LIP_RATIO, write_official_standins)
from orchestrator.face import NoFaceError, OnnxFaceModelRunner
from orchestrator.face.geometry import anchor_points, transform_points
from orchestrator.face.official import OfficialFaceAnalyzer
from orchestrator.face.tracking import DrivingCropTracker


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    weights = tmp_path_factory.mktemp("weights")
    assert not official_files_present(weights)
    write_official_standins(weights)
    assert official_files_present(weights)
    return weights, export_official_models(weights, tmp_path_factory.mktemp("onnx"))


@pytest.fixture(scope="module")
def analyzer(exported):
    return OfficialFaceAnalyzer(OnnxFaceModelRunner(exported[1]))


def bright_square_image() -> np.ndarray:
    image = np.zeros((600, 800, 3), np.uint8)
    image[300:380, 400:480] = 255
    return image


def test_wrapped_models_match_the_served_specs(exported):
    specs = {s.name: s for s in face_served_models(official=True)}
    for name, path in exported[1].items():
        graph = onnx.load(str(path)).graph
        assert [i.name for i in graph.input] == [t.name for t in specs[name].inputs]
        assert [o.name for o in graph.output] == [t.name for t in specs[name].outputs]
        assert specs[name].batching.max_batch_size >= 8


def test_batched_wrapper_equals_the_original_file_per_item(exported):
    weights, files = exported
    rng = np.random.default_rng(0)
    batch = rng.integers(0, 256, (3, 512, 512, 3), dtype=np.uint8)
    batch[1, 100:200, 100:200] = 255
    wrapped = ort.InferenceSession(str(files["official_face_detector"]), providers=["CPUExecutionProvider"])
    original = ort.InferenceSession(str(weights / DETECTOR_FILE), providers=["CPUExecutionProvider"])
    ours = wrapped.run(None, {"image": batch})
    for i in range(3):
        blob = ((batch[i].astype(np.float32) - 127.5) / 128.0).transpose(2, 0, 1)[None]
        for got, want in zip(ours, original.run(None, {"input.1": blob})):
            np.testing.assert_allclose(got[i], want, atol=1e-5)


def test_official_analyzer_finds_the_face_and_measures_it(analyzer):
    faces = asyncio.run(analyzer.detect(bright_square_image()))
    assert len(faces) == 1
    face = faces[0]
    assert face.box[0] <= 440 <= face.box[2] and face.box[1] <= 340 <= face.box[3]
    assert face.landmarks.shape == (203, 2)
    np.testing.assert_allclose(face.eye_ratio, STANDIN_EYE_RATIOS, atol=1e-4)  # ratios survive both crops
    assert abs(face.lip_ratio - STANDIN_LIP_RATIO) < 1e-4
    eye, mouth = transform_points(anchor_points(face.landmarks), face.crop.M_o2c)
    assert abs(eye[0] - mouth[0]) < 1.0 and eye[1] < mouth[1]  # the crop is upright around the face


def test_official_source_crop_and_no_face(analyzer):
    crop = asyncio.run(analyzer.source_crop(bright_square_image()))
    assert crop.image_256.shape == (256, 256, 3) and crop.image_256.max() == 255  # the "face" is in the crop
    with pytest.raises(NoFaceError, match="face box hint"):
        asyncio.run(analyzer.source_crop(np.zeros((480, 640, 3), np.uint8)))


def test_official_tracking_streams(analyzer):
    tracker = DrivingCropTracker(analyzer)
    results = [asyncio.run(tracker.process(bright_square_image())) for _ in range(3)]
    assert [r.redetected for r in results] == [True, False, False]
    assert all(r.image_256.shape == (256, 256, 3) for r in results)
