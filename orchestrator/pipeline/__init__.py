"""The stages of an animation request, one module each, shared by every RPC:

``source`` (decode, face crop) -> ``driving`` (driving motion in chunks) -> ``keypoint_stage`` (keypoint math,
stitching/retargeting) -> ``render`` (Triton) -> ``paste`` (paste-back) -> encode (``..media``).
``image_source`` and ``video_source`` string them together for a still portrait and a source video; ``animate``
encodes and reports what they render (AnimatePortrait).
"""
from .animate import MIME, Animation, animate, progress, summary, weights_warnings
from .context import RequestContext
from .image_source import ImageAnimation
from .keypoint_stage import KeypointStage
from .render import output_frames, render
from .source import Source, animal_source, prepare_source

__all__ = ["MIME", "Animation", "ImageAnimation", "KeypointStage", "RequestContext", "Source", "animal_source",
           "animate", "output_frames", "prepare_source", "progress", "render", "summary", "weights_warnings"]
