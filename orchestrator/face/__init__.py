"""Face detection, landmarks, LivePortrait crop geometry, eye/lip ratios, tracking and face selection.

Public API: see README.md in this folder.
"""
from .analyzer import AnalyzerConfig, Face, FaceAnalyzer, NoFaceError, SourceCrop, crop_face, faces_to_json
from .decode import InvalidImageError, decode_image, limit_size
from .geometry import CropConfig, CropTransform, crop_transform, paste_back, paste_back_mask, resize_crop, warp_crop
from .ordering import ORDERINGS, FaceSelectionError, order_faces, select_face
from .ratios import RatioMapping
from .runner import FaceModelRunner, OnnxFaceModelRunner

__all__ = [
    "AnalyzerConfig", "CropConfig", "CropTransform", "Face", "FaceAnalyzer", "FaceModelRunner",
    "FaceSelectionError", "InvalidImageError", "NoFaceError", "ORDERINGS", "OnnxFaceModelRunner", "RatioMapping",
    "SourceCrop", "crop_face", "crop_transform", "decode_image", "faces_to_json", "limit_size", "order_faces",
    "paste_back", "paste_back_mask", "resize_crop", "select_face", "warp_crop", "FACE_STACKS", "make_analyzer",
]

FACE_STACKS = ("mediapipe", "official")


def make_analyzer(runner: FaceModelRunner, face_stack: str = "mediapipe") -> FaceAnalyzer:
    """The analyzer for a ``face_stack`` setting: ``mediapipe`` (default models) or ``official`` (InsightFace)."""
    if face_stack == "mediapipe":
        return FaceAnalyzer(runner)
    if face_stack == "official":
        from .official import OfficialFaceAnalyzer

        return OfficialFaceAnalyzer(runner)
    raise ValueError(f"unknown face_stack {face_stack!r}; choose one of {', '.join(FACE_STACKS)}")
