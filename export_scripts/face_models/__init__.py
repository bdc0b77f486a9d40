"""Face detection and landmark models for the model repository.

Default stack (weights from the ``mediapipe==0.10.14`` wheel, Apache-2.0): BlazeFace short range as
``face_detector`` and FaceMesh (468 points) as ``face_landmarks``, converted with this package's TFLite rebuilder.
Optional official stack (InsightFace buffalo_l + LivePortrait 203-point landmarks, user-supplied files): see
``official.py``.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import onnx
import torch

from ..model_spec import BatchingSpec, ServedModel, TensorSpec
from . import heads
from .mediapipe_wheel import mediapipe_tflite_files
from .official import export_official_models, official_files_present, official_served_models
from .tflite_graph import TFLiteModule

OPSET = 17
BATCHING = BatchingSpec(max_batch_size=8, preferred_batch_sizes=(4, 8), max_queue_delay_us=1000)


def face_served_models(official: bool = False) -> list[ServedModel]:
    """The default face models; with ``official`` also the official-stack models (when their files are supplied)."""
    d, m = heads.DETECTOR_SIZE, heads.LANDMARKS_SIZE
    models = [
        ServedModel(
            "face_detector",
            (TensorSpec("image", (d, d, 3), "UINT8"),),
            (TensorSpec("boxes", (heads.NUM_ANCHORS, 4)), TensorSpec("keypoints", (heads.NUM_ANCHORS, 6, 2)),
             TensorSpec("scores", (heads.NUM_ANCHORS,))),
            "BlazeFace short range: letterboxed RGB 128x128 -> decoded anchor boxes, 6 keypoints, scores",
            batching=BATCHING,
        ),
        ServedModel(
            "face_landmarks",
            (TensorSpec("image", (m, m, 3), "UINT8"),),
            (TensorSpec("landmarks", (heads.NUM_LANDMARKS, 3)), TensorSpec("face_score", (1,))),
            "FaceMesh: rotated face crop RGB 192x192 -> 468 landmarks (crop px) and face presence",
            batching=BATCHING,
        ),
    ]
    return models + (official_served_models() if official else [])


def build_modules(tflite_files: dict[str, bytes]) -> dict[str, torch.nn.Module]:
    return {
        "face_detector": heads.FaceDetectorHead(TFLiteModule(tflite_files["face_detector"])).eval(),
        "face_landmarks": heads.FaceLandmarksHead(TFLiteModule(tflite_files["face_landmarks"])).eval(),
    }


def export_module(module: torch.nn.Module, spec: ServedModel, path: Path) -> None:
    names_in = [t.name for t in spec.inputs]
    names_out = [t.name for t in spec.outputs]
    example = tuple(torch.randint(0, 256, (2, *t.dims), dtype=torch.uint8) for t in spec.inputs)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, example, str(path), input_names=names_in, output_names=names_out,
                          dynamic_axes={n: {0: "batch"} for n in names_in + names_out}, opset_version=OPSET,
                          dynamo=False)
    _set_static_dims(path, spec)


def _set_static_dims(path: Path, spec: ServedModel) -> None:
    """Write the spec's dims (batch axis named ``batch``) on every graph input and output, so Triton sees them."""
    model = onnx.load(str(path))
    for tensors, specs in ((model.graph.input, spec.inputs), (model.graph.output, spec.outputs)):
        for tensor, tensor_spec in zip(tensors, specs):
            dims = tensor.type.tensor_type.shape.dim
            del dims[:]
            dims.add().dim_param = "batch"
            for value in tensor_spec.dims:
                dims.add().dim_value = value
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def export_face_models(output_dir: Path, weights_dir: Path | None, cache_dir: Path) -> dict[str, Path]:
    """Write ``face_detector.onnx`` and ``face_landmarks.onnx`` (and the official stack when ``weights_dir`` has it).

    The MediaPipe wheel is taken from an installed package or ``cache_dir``, else downloaded there with pip.
    Returns model name -> ONNX path.
    """
    output_dir = Path(output_dir)
    specs = {s.name: s for s in face_served_models()}
    written = {}
    for name, module in build_modules(mediapipe_tflite_files(Path(cache_dir))).items():
        path = output_dir / f"{name}.onnx"
        export_module(module, specs[name], path)
        written[name] = path
    if weights_dir is not None and official_files_present(Path(weights_dir)):
        written.update(export_official_models(Path(weights_dir), output_dir))
    return written
