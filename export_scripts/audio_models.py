"""The audio-to-motion models of the contract (Ditto's audio encoder and LMDM denoiser) and their export.

| model         | inputs                                                  | outputs                              |
|---------------|---------------------------------------------------------|--------------------------------------|
| audio_encoder | audio [6480] (16 kHz window, float32)                   | encoding [20, 1024] (50 Hz frames)   |
| lmdm          | x_t [80, 265], kp_cond [265], cond [80, 1103], t [1]    | x0_uncond, x0_cond [80, 265]         |

``lmdm`` is one DDIM step's denoiser: the unconditional and conditional passes of a window run as one batch of two
inside the model, and Triton's dynamic batcher groups the windows of concurrent requests and streams (each request
is one window at one step; ``t`` is the diffusion step as a float). The DDIM loop itself runs in the orchestrator
(``orchestrator/audio/sampler.py``), so steps, guidance and noise stay request options.

Weights: ``synthetic`` draws both networks by the audio golden's rule (``audio_networks.seeded_init_``, the export's
``--seed``). Official: Ditto's ``lmdm_v0.4_hubert.pth`` and the PyTorch checkpoint of the HuBERT-large it was
trained on (``hubert-large-ls960-ft/pytorch_model.bin``, ``transformers``' layout: ``hubert.*`` keys, the CTC head
ignored, old ``weight_g``/``weight_v`` names mapped), found under ``--weights`` (``find_ditto``). Ditto publishes its
encoder only as ONNX (``hubert_streaming_fix_kv.onnx``, with streaming key/value inputs); it is recognised, not
served, and the export says what to supply instead.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

try:
    from orchestrator.model_names import AUDIO_MODELS
except ImportError:  # in a pytorch-target model folder (liveportrait_torch/): the copy that travels with this file
    from .model_names import AUDIO_MODELS

from .audio_networks import AudioProfile, get_audio_profile, load_lmdm_checkpoint, synthetic_hubert, synthetic_lmdm
from .checkpoints import CheckpointError, load_state_strict, read_checkpoint
from .model_spec import BatchingSpec, ServedModel, TensorSpec
from .networks.hubert import HubertModel
from .networks.lmdm import MotionDecoder

WINDOW_SAMPLES = 6480
ENCODER_FRAMES = 20
FEATURE_DIM = 1024
SEQ_FRAMES = 80
MOTION_DIM = 265
CONDITION_DIM = 1103

# One window per request; up to 16 windows (streams) per batch: the GPU goal's "batch of 16 streams".
AUDIO_BATCHING = BatchingSpec(max_batch_size=16, preferred_batch_sizes=(8, 16), max_queue_delay_us=1000)

LMDM_FILES = ("ditto_pytorch/models/lmdm_v0.4_hubert.pth", "checkpoints/ditto_pytorch/models/lmdm_v0.4_hubert.pth",
              "models/lmdm_v0.4_hubert.pth", "lmdm_v0.4_hubert.pth")
HUBERT_FILES = ("hubert-large-ls960-ft/pytorch_model.bin", "facebook/hubert-large-ls960-ft/pytorch_model.bin",
                "ditto_pytorch/aux_models/hubert-large-ls960-ft/pytorch_model.bin")
HUBERT_ONNX_FILES = ("ditto_pytorch/aux_models/hubert_streaming_fix_kv.onnx",
                     "checkpoints/ditto_pytorch/aux_models/hubert_streaming_fix_kv.onnx",
                     "aux_models/hubert_streaming_fix_kv.onnx", "hubert_streaming_fix_kv.onnx")


def audio_served_models() -> list[ServedModel]:
    """The audio models of the contract (the same for every profile)."""
    return [
        ServedModel(
            "audio_encoder", (TensorSpec("audio", (WINDOW_SAMPLES,)),),
            (TensorSpec("encoding", (ENCODER_FRAMES, FEATURE_DIM)),),
            "HuBERT-large audio encoder: one 0.405 s window of 16 kHz audio -> 20 frames of 1024-d features",
            batching=AUDIO_BATCHING,
        ),
        ServedModel(
            "lmdm",
            (TensorSpec("x_t", (SEQ_FRAMES, MOTION_DIM)), TensorSpec("kp_cond", (MOTION_DIM,)),
             TensorSpec("cond", (SEQ_FRAMES, CONDITION_DIM)), TensorSpec("t", (1,))),
            (TensorSpec("x0_uncond", (SEQ_FRAMES, MOTION_DIM)), TensorSpec("x0_cond", (SEQ_FRAMES, MOTION_DIM))),
            "LMDM denoiser, one DDIM step of one window: unconditional and conditional clean motion (one batch of two)",
            batching=AUDIO_BATCHING,
        ),
    ]


class AudioEncoderHead(nn.Module):
    def __init__(self, hubert: HubertModel):
        super().__init__()
        self.hubert = hubert

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.hubert(audio)


class LmdmHead(nn.Module):
    """(x_t, kp_cond, cond, t) -> (x0_uncond, x0_cond): both guidance passes as one batch of twice the size."""

    def __init__(self, decoder: MotionDecoder):
        super().__init__()
        self.decoder = decoder

    def forward(self, x_t: torch.Tensor, kp_cond: torch.Tensor, cond: torch.Tensor,
                t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.decoder.forward_pair(x_t, kp_cond, cond, t.reshape(-1))


@dataclass
class AudioNetworks:
    hubert: HubertModel
    lmdm: MotionDecoder
    label: str

    def modules(self) -> dict[str, nn.Module]:
        return {"audio_encoder": AudioEncoderHead(self.hubert).eval(), "lmdm": LmdmHead(self.lmdm).eval()}


def audio_module(name: str, profile_name: str) -> nn.Module:
    """The serving head of ``name`` with freshly constructed networks of ``profile_name`` (weights loaded next)."""
    profile = get_audio_profile(profile_name)
    if name == "audio_encoder":
        return AudioEncoderHead(HubertModel(profile.hubert)).eval()
    if name == "lmdm":
        return LmdmHead(MotionDecoder(profile.lmdm)).eval()
    raise KeyError(f"{name!r} is not an audio model of the contract ({', '.join(sorted(AUDIO_MODELS))})")


def find_ditto(weights: Path) -> tuple[Path | None, Path | None, Path | None]:
    """(LMDM checkpoint, HuBERT PyTorch checkpoint, Ditto's ONNX audio encoder) under a weights directory, each None
    when absent."""
    lmdm, hubert, onnx = (next((weights / f for f in files if (weights / f).is_file()), None)
                          for files in (LMDM_FILES, HUBERT_FILES, HUBERT_ONNX_FILES))
    return lmdm, hubert, onnx


def load_hubert_checkpoint(path: Path, profile: AudioProfile) -> HubertModel:
    """A ``transformers`` HuBERT checkpoint (``HubertModel`` or ``HubertForCTC``), loaded strictly."""
    saved = read_checkpoint(Path(path))
    if not isinstance(saved, dict):
        raise CheckpointError(f"{path}: expected a state dict (found {type(saved).__name__})")
    renamed = {"weight_g": "parametrizations.weight.original0", "weight_v": "parametrizations.weight.original1"}
    state = {}
    for key, value in saved.items():
        if key.startswith("lm_head."):
            continue
        key = key.removeprefix("hubert.")
        head, _, last = key.rpartition(".")
        state[f"{head}.{renamed[last]}" if last in renamed else key] = value
    model = HubertModel(profile.hubert)
    load_state_strict(model, state, str(path))
    return model.eval().requires_grad_(False)


def load_audio_networks(weights: str, profile_name: str, seed: int) -> AudioNetworks:
    profile: AudioProfile = get_audio_profile(profile_name)
    if weights == "synthetic":
        return AudioNetworks(synthetic_hubert(profile, seed), synthetic_lmdm(profile, seed),
                             f"synthetic (seed {seed}, audio profile {profile.name})")
    lmdm_file, hubert_file, hubert_onnx = find_ditto(Path(weights))
    if lmdm_file is None:
        raise CheckpointError(f"--audio: no Ditto LMDM checkpoint under {weights} (looked for {', '.join(LMDM_FILES)})")
    if hubert_file is None:
        onnx = (f"Ditto's ONNX encoder {hubert_onnx} is recognised but not served (its streaming key/value inputs "
                f"are not the audio_encoder contract); " if hubert_onnx is not None else "")
        raise CheckpointError(
            f"--audio: {lmdm_file} found, but no audio encoder weights: {onnx}put the PyTorch checkpoint of "
            f"facebook/hubert-large-ls960-ft at {Path(weights) / HUBERT_FILES[0]}")
    return AudioNetworks(load_hubert_checkpoint(hubert_file, profile), load_lmdm_checkpoint(lmdm_file, profile),
                         f"official (Ditto {lmdm_file.resolve()}, HuBERT {hubert_file.resolve()})")


def export_audio_models(request, parameters: dict[str, str], log, only: tuple[str, ...] | None = None) -> list[dict]:
    """Write ``audio_encoder`` and ``lmdm`` (or the models named in ``only``) into the repository of ``request`` (a
    ``cli.ExportRequest``)."""
    from . import model_repository as repo

    networks = load_audio_networks(request.weights, request.profile, request.seed)
    log(f"audio models: {networks.label}")
    parameters = {**parameters, "weights": networks.label}
    modules = networks.modules()
    rows = []
    for spec in audio_served_models():
        if only is not None and spec.name not in only:
            continue
        started = time.perf_counter()
        if request.target == "pytorch":
            repo.write_torch_model(request.output, spec, modules[spec.name].state_dict(), parameters, request.device)
            size = (request.output / spec.name / str(repo.VERSION) / "weights.pt").stat().st_size
            rows.append({"model": spec.name, "weights_bytes": size, "seconds": round(time.perf_counter() - started, 2)})
            log(f"      {spec.name}: {size / 1e6:.1f} MB of weights ({request.device})")
            continue
        rows.append(repo.export_served_model(request.output, modules[spec.name], spec, spec, request.target,
                                             parameters, log))
    return rows
