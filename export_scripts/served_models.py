"""The model contract: every served model's tensors, and the ensembles built from them.

Names and shapes are what the orchestrator and the tests rely on; only ``feature_3d`` depends on the profile. The names
the orchestrator calls live in ``orchestrator/model_names.py`` (no export code needed to know them).
"""
from __future__ import annotations

try:
    from orchestrator.model_names import (AUDIO_MODELS, LIVEPORTRAIT_MODELS, MODEL_SET_SUFFIXES, contract_name,
                                          model_set_suffix)
except ImportError:  # in a pytorch-target model folder (liveportrait_torch/): the copy that travels with this file
    from .model_names import AUDIO_MODELS, LIVEPORTRAIT_MODELS, MODEL_SET_SUFFIXES, contract_name, model_set_suffix

from .model_spec import EnsembleModel, EnsembleStep, ServedModel, TensorSpec
from .profiles import Profile

NUM_KP = 21
IMAGE_IN = (3, 256, 256)
IMAGE_OUT = (3, 512, 512)


GRID_SAMPLE_NOTE = """\
The warping module samples a 3-D feature volume; stock TensorRT 10 has no 5-D GridSample. By default this target's
warping_spade.onnx samples with gathers (export_scripts/networks/sampling.py: Floor/Clip/Where/GatherElements and
arithmetic, equal to GridSample within 1e-5), so TensorRT builds the whole model as one engine, no plugin, no other
provider. `liveportrait-export --grid-sampler native` writes 5-D GridSample nodes instead: onnxruntime's CUDA EP runs
them from onnxruntime 1.25 (Triton 26.07 ships 1.27); older releases run them on the CPU EP between TensorRT engines.
trt_layer_norm_fp32_fallback keeps the normalisation variances in FP32; Triton's TensorRT parameters set no other
per-layer precision, so the measured fp16 policy (fp32 islands) is served by the pytorch target.
"""


def for_model_set(model, model_set: str):
    """A served model or an ensemble of the contract under its name in ``model_set`` (ensemble steps too)."""
    from dataclasses import replace

    suffix = model_set_suffix(model_set)
    if not suffix:
        return model
    if isinstance(model, EnsembleModel):
        return replace(model, name=model.name + suffix,
                       steps=tuple(replace(step, model=step.model + suffix) for step in model.steps))
    return replace(model, name=model.name + suffix)


def kp(name: str) -> TensorSpec:
    return TensorSpec(name, (NUM_KP, 3))


def served_models(profile: Profile) -> list[ServedModel]:
    feature_3d = TensorSpec("feature_3d", profile.feature_3d_dims)
    image = TensorSpec("image", IMAGE_IN)
    return [
        ServedModel(
            "appearance_feature_extractor", (image,), (feature_3d,),
            "F: source image -> 3-D appearance feature volume",
        ),
        ServedModel(
            "motion_extractor", (image,),
            (TensorSpec("pitch", (1,)), TensorSpec("yaw", (1,)), TensorSpec("roll", (1,)), TensorSpec("t", (3,)),
             kp("exp"), TensorSpec("scale", (1,)), kp("kp"),
             TensorSpec("pitch_bins", (66,)), TensorSpec("yaw_bins", (66,)), TensorSpec("roll_bins", (66,))),
            "M: image -> head pose (degrees), translation, expression, scale, canonical keypoints (get_kp_info); "
            "the pose's raw 66-bin logits too (audio motion mixes angles as logits)",
        ),
        ServedModel(
            "stitching", (kp("kp_source"), kp("kp_driving")), (kp("kp_driving_stitched"),),
            "S: stitching MLP and its post-processing (official stitching())",
        ),
        ServedModel(
            "retarget_eye", (kp("kp_source"), TensorSpec("eye_ratio", (3,))), (kp("delta"),),
            "eye retargeting MLP: keypoint delta for a target eye-open ratio",
        ),
        ServedModel(
            "retarget_lip", (kp("kp_source"), TensorSpec("lip_ratio", (2,))), (kp("delta"),),
            "lip retargeting MLP: keypoint delta for a target lip-open ratio",
        ),
        ServedModel(
            "warping_spade", (feature_3d, kp("kp_source"), kp("kp_driving")), (TensorSpec("image", IMAGE_OUT),),
            "W + G: warp the feature volume by the keypoint motion and decode a 512x512 image",
            gpu_note=GRID_SAMPLE_NOTE,
        ),
        ServedModel(
            "preprocess_image", (TensorSpec("image_u8", (256, 256, 3), "UINT8"),), (image,),
            "uint8 HWC RGB -> float CHW in [0, 1]",
        ),
        ServedModel(
            "postprocess_image", (TensorSpec("image", IMAGE_OUT),), (TensorSpec("image_u8", (512, 512, 3), "UINT8"),),
            "float CHW in [0, 1] -> uint8 HWC (clip, x255, truncate)",
        ),
        ServedModel(
            "postprocess_image_i420", (TensorSpec("image", IMAGE_OUT),),
            (TensorSpec("image_i420", (768, 512), "UINT8"),),
            "float CHW in [0, 1] -> planar YUV 4:2:0 uint8 (BT.601 limited range, OpenCV I420 layout)",
        ),
    ]


def ensembles(profile: Profile) -> list[EnsembleModel]:
    u8_in = TensorSpec("image_u8", (256, 256, 3), "UINT8")
    motion_outputs = ("pitch", "yaw", "roll", "t", "exp", "scale", "kp", "pitch_bins", "yaw_bins", "roll_bins")
    motion_specs = {m.name: m for m in served_models(profile)}["motion_extractor"].outputs
    return [
        EnsembleModel(
            name="motion_extractor_u8",
            inputs=(u8_in,),
            outputs=motion_specs,
            steps=(
                EnsembleStep("preprocess_image", (("image_u8", "image_u8"),), (("image", "image_f32"),)),
                EnsembleStep("motion_extractor", (("image", "image_f32"),), tuple((o, o) for o in motion_outputs)),
            ),
            description="motion_extractor on uint8 frames (4x fewer bytes on the wire)",
        ),
        _render_ensemble("render_u8", "postprocess_image", TensorSpec("image_u8", (512, 512, 3), "UINT8"),
                         "one rendered frame: the feature volume is recomputed inside Triton and never crosses the wire"),
        _render_ensemble("render_i420", "postprocess_image_i420", TensorSpec("image_i420", (768, 512), "UINT8"),
                         "render_u8 with a planar YUV 4:2:0 output: half the bytes of RGB (the serving path)"),
    ]


def _render_ensemble(name: str, postprocess: str, output: TensorSpec, description: str) -> EnsembleModel:
    return EnsembleModel(
        name=name,
        inputs=(TensorSpec("source_u8", (256, 256, 3), "UINT8"), kp("kp_source"), kp("kp_driving")),
        outputs=(output,),
        steps=(
            EnsembleStep("preprocess_image", (("image_u8", "source_u8"),), (("image", "source_f32"),)),
            EnsembleStep("appearance_feature_extractor", (("image", "source_f32"),), (("feature_3d", "feature_3d"),)),
            EnsembleStep(
                "warping_spade",
                (("feature_3d", "feature_3d"), ("kp_source", "kp_source"), ("kp_driving", "kp_driving")),
                (("image", "image_f32"),),
            ),
            EnsembleStep(postprocess, (("image", "image_f32"),), ((output.name, output.name),)),
        ),
        description=description,
    )


def repository_models(profile: Profile, official_face_stack: bool = False,
                      audio: bool = False) -> tuple[list[ServedModel], list[EnsembleModel]]:
    """Everything a model repository of this profile holds: the LivePortrait models, then the face models (and the
    audio models with ``audio``: ``liveportrait-export --audio``)."""
    from .face_models import face_served_models

    models = served_models(profile) + face_served_models(official_face_stack)
    if audio:
        from .audio_models import audio_served_models

        models += audio_served_models()
    return models, ensembles(profile)
