"""The converted MediaPipe models reproduce the TFLite runtime (LiteRT) on real faces, at any batch size."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest

from export_scripts.face_models import face_served_models, heads
from export_scripts.face_models.cache import cached_face_models, default_cache_dir
from export_scripts.face_models.mediapipe_wheel import mediapipe_tflite_files

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
PORTRAITS = ["source/s0.jpg", "source/s5.jpg", "source/s9.jpg", "driving/d9.jpg", "driving/d30.jpg"]
TOLERANCE = 1e-3


@pytest.fixture(scope="module")
def onnx_files():
    return cached_face_models()


@pytest.fixture(scope="module")
def tflite_files():
    return mediapipe_tflite_files(default_cache_dir() / "wheels")


def _faces(size: int) -> np.ndarray:
    """Centre squares of real portraits, resized to the model input (uint8 RGB)."""
    out = []
    for name in PORTRAITS:
        image = cv2.cvtColor(cv2.imread(str(SHARED / "examples" / name)), cv2.COLOR_BGR2RGB)
        h, w = image.shape[:2]
        s = min(h, w)
        square = image[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
        out.append(cv2.resize(square, (size, size), interpolation=cv2.INTER_AREA))
    return np.stack(out)


def _litert(model: bytes, batch: np.ndarray) -> list[list[np.ndarray]]:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model)
    interpreter.allocate_tensors()
    results = []
    for item in batch:
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], item[None])
        interpreter.invoke()
        results.append([interpreter.get_tensor(o["index"]) for o in interpreter.get_output_details()])
    return results


def _ort(path: Path, batch: np.ndarray) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, {"image": batch})))


def test_detector_matches_tflite(onnx_files, tflite_files):
    images = _faces(heads.DETECTOR_SIZE)
    ours = _ort(onnx_files["face_detector"], images)
    reference = _litert(tflite_files["face_detector"], images.astype(np.float32) / 127.5 - 1.0)
    regressors = np.concatenate([r[0] for r in reference])
    logits = np.concatenate([r[1] for r in reference])
    expected = heads.decode_blazeface(regressors, logits)
    for key in ("boxes", "keypoints", "scores"):
        assert np.abs(ours[key] - expected[key]).max() < TOLERANCE, key
    assert (expected["scores"].max(axis=1) > 0.5).all()  # every portrait has a confident face


def test_landmarks_match_tflite(onnx_files, tflite_files):
    images = _faces(heads.LANDMARKS_SIZE)
    ours = _ort(onnx_files["face_landmarks"], images)
    reference = _litert(tflite_files["face_landmarks"], images.astype(np.float32) / 255.0)
    landmarks = np.concatenate([r[0].reshape(1, 468, 3) for r in reference])
    presence = 1 / (1 + np.exp(-np.concatenate([r[1].reshape(1, 1) for r in reference])))
    assert np.abs(ours["landmarks"] - landmarks).max() < TOLERANCE
    assert np.abs(ours["face_score"] - presence).max() < TOLERANCE


@pytest.mark.parametrize("model", ["face_detector", "face_landmarks"])
def test_batch_of_one_equals_batch_of_many(onnx_files, model):
    size = heads.DETECTOR_SIZE if model == "face_detector" else heads.LANDMARKS_SIZE
    images = _faces(size)
    batched = _ort(onnx_files[model], images)
    for i in range(len(images)):
        single = _ort(onnx_files[model], images[i:i + 1])
        for key, value in single.items():
            assert np.abs(value[0] - batched[key][i]).max() < 1e-4


def test_onnx_files_match_the_served_model_specs(onnx_files):
    kinds = {"UINT8": onnx.TensorProto.UINT8, "FP32": onnx.TensorProto.FLOAT}
    for spec in face_served_models():
        graph = onnx.load(str(onnx_files[spec.name])).graph
        assert spec.batching.max_batch_size >= 8
        for tensors, specs in ((graph.input, spec.inputs), (graph.output, spec.outputs)):
            assert [t.name for t in tensors] == [s.name for s in specs]
            for t, s in zip(tensors, specs):
                dims = [d.dim_value if d.dim_value else d.dim_param for d in t.type.tensor_type.shape.dim]
                assert dims == ["batch", *s.dims] and t.type.tensor_type.elem_type == kinds[s.dtype]
