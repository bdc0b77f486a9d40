"""The served models' names that both sides of the model contract use: the orchestrator calls them, the exporter
(``export_scripts/served_models.py``, which owns their tensors and shapes) serves them. A small module of its own, so
the orchestrator needs no export code to know them; a test checks the exporter's contract serves exactly these."""
from __future__ import annotations

# Every LivePortrait model and ensemble of the contract: the ones a model set renames (not the face models).
LIVEPORTRAIT_MODELS = frozenset({
    "appearance_feature_extractor", "motion_extractor", "stitching", "retarget_eye", "retarget_lip", "warping_spade",
    "preprocess_image", "postprocess_image", "postprocess_image_i420",  # served models
    "motion_extractor_u8", "render_u8", "render_i420",  # ensembles
})

# The audio-to-motion models (Ditto's audio encoder and LMDM denoiser): one copy per repository, not renamed by a
# model set; exported with ``liveportrait-export --audio``.
AUDIO_MODELS = frozenset({"audio_encoder", "lmdm"})

# Model sets: the official human and animal checkpoints have the same architecture and tensors, so an animal
# repository is the same contract with every LivePortrait model (and every ensemble step) renamed with a suffix;
# it can then be served beside the human one in the same Triton (`--model-repository` twice). The face models are
# not part of a model set (there is no animal detector; the human repository serves MediaPipe's).
MODEL_SET_SUFFIXES = {"human": "", "animal": "_animal"}


def model_set_suffix(model_set: str) -> str:
    if model_set not in MODEL_SET_SUFFIXES:
        raise ValueError(f"unknown model set {model_set!r}; choose one of {', '.join(MODEL_SET_SUFFIXES)}")
    return MODEL_SET_SUFFIXES[model_set]


def contract_name(name: str) -> str:
    """The contract's name of a served model: ``render_i420_animal`` -> ``render_i420`` (other names unchanged)."""
    for suffix in MODEL_SET_SUFFIXES.values():
        if suffix and name.endswith(suffix):
            return name[:-len(suffix)]
    return name
