"""Audio-to-motion served by Triton (``audio_encoder``, ``lmdm``; one Triton start for the module).

The repository is the tiny one with the audio models, its LMDM the full-size one with the synthetic weights of
golden case A (the full-size check: one window's step-0 denoiser outputs against the golden); the audio encoder is
the tiny one (the full HuBERT-large is checked in process by test_audio_golden.py). End to end: speech -> motion
frames through Triton, deterministic per seed and equal to the same math run in process; a portrait animated by
speech through the same stages as a driving video.
"""
from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from audio_golden import audio_cases
from export_scripts.audio_models import export_audio_models
from export_scripts.audio_networks import FULL, TINY, synthetic_hubert, synthetic_lmdm, torch_denoiser, torch_encoder
from export_scripts.onnx_export import relative_l2
from orchestrator.metrics import Metrics
from orchestrator.pipeline.audio_driving import (AudioMotionOptions, AudioSource, audio_motion, generate,
                                                 mixed_motion)
from orchestrator.pipeline.context import RequestContext, uncounted
from orchestrator.audio.stitch import SourceMotion, stitch
from orchestrator.errors import InvalidRequest
from orchestrator.keypoints import transform_keypoints
from orchestrator.timing import Timings
from orchestrator.triton_client import RequestRunner, TritonConfig, TritonRunner, Traffic

ENCODER_SEED = 0
BUILD = Path(__file__).resolve().parents[1] / "build" / "test"
EXAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "examples"
CASE = next(p.values[0] for p in audio_cases())  # case A (the first case found)


@pytest.fixture(scope="module")
def served():
    """tritonserver over the tiny repository with the audio models (``--audio``), its LMDM replaced by the full-size
    one with the synthetic weights of the golden case."""
    from export_scripts.cli import ExportRequest, run_export
    from orchestrator.triton_process import TritonProcess

    output = BUILD / "repo-tiny-cpu-audio-full-lmdm"
    run_export(ExportRequest(weights="synthetic", profile="tiny", target="cpu", output=output, audio=True),
               log=lambda *_: None)
    seed = CASE.metadata["seed_weights"]
    config = output / "lmdm" / "config.pbtxt"
    if f"seed {seed}, audio profile full" not in config.read_text():
        request = SimpleNamespace(weights="synthetic", profile="full", seed=seed, target="cpu", output=output,
                                  device="cpu")
        export_audio_models(request, {"profile": "full"}, lambda *_: None, only=("lmdm",))
    server = TritonProcess(output, log_file=output.parent / "tritonserver-audio.log")
    server.start()
    yield server
    server.stop()


def run(served, coroutine_factory):
    async def main():
        runner = TritonRunner(TritonConfig(url=served.grpc_url), Metrics())
        try:
            ctx = RequestContext(RequestRunner(runner, Traffic(), None), None, Timings(), uncounted)
            return await coroutine_factory(ctx)
        finally:
            await runner.close()

    return asyncio.run(main())


def speech(seconds: float) -> np.ndarray:
    return CASE.load("audio")["in_audio_16k"][:int(seconds * 16000)].astype(np.float32)


def case_source() -> AudioSource:
    s = CASE.load("source")
    raw = {k.removeprefix("in_x_s_info_"): v for k, v in s.items() if k.startswith("in_x_s_info_")}
    return AudioSource(SourceMotion.from_raw(raw), s["in_eye_open"].reshape(2), s["in_eye_ball"].reshape(6))


@pytest.mark.triton
def test_served_lmdm_reproduces_the_golden_step_zero_outputs(served):
    """Full size: window 0 of the offline chain, step 0 (t = 999), both guidance passes in one served call."""
    g = CASE.load("lmdm_offline")

    async def call(ctx):
        return await ctx.runner.infer("lmdm", {"x_t": g["win_x_T"][0], "kp_cond": g["win_kp_cond"][0],
                                              "cond": g["win_aud_cond"][0], "t": np.array([[999.0]], np.float32)})

    out = run(served, call)
    assert relative_l2(out["x0_uncond"], g["win_step0_uncond"][0]) <= 1e-4
    assert relative_l2(out["x0_cond"], g["win_step0_cond"][0]) <= 1e-4


@pytest.mark.triton
def test_speech_to_motion_through_triton_is_deterministic_and_equals_the_in_process_math(served):
    samples = speech(1.5)
    source = case_source()
    options = AudioMotionOptions(emotion="happy", steps=3, seed=7)

    first, again, other = (run(served, lambda ctx, o=o: audio_motion(ctx, samples, source, o))
                           for o in (options, options, AudioMotionOptions(emotion="happy", steps=3, seed=8)))
    assert len(first) == 38 and first.x_d.shape == (38, 21, 3)  # 1.5 s at 25 fps, rounded up
    assert np.array_equal(first.x_d, again.x_d) and np.array_equal(first.generated, again.generated)
    assert not np.allclose(first.generated, other.generated)

    with torch.no_grad():
        local = generate(torch_encoder(synthetic_hubert(TINY, ENCODER_SEED)),
                         torch_denoiser(synthetic_lmdm(FULL, CASE.metadata["seed_weights"])), samples, source, options)
    assert relative_l2(first.generated, local.generated) <= 1e-3
    assert relative_l2(first.x_d, local.x_d) <= 1e-4


def test_the_motion_frames_drive_the_keypoint_stage_as_the_stitched_keypoints():
    """As a driving video's ``Motion`` (source scale and canonical keypoints), frame 0 is the source itself, and the
    keypoint transform gives Ditto's stitched keypoints; head_motion 0 keeps the source's pose."""
    rng = np.random.default_rng(0)
    source = case_source()
    generated = source.motion.vector() + 0.3 * rng.standard_normal((6, 265)).astype(np.float32)
    result = mixed_motion(source, generated, generated[0])
    np.testing.assert_allclose(result.x_d, stitch(source.motion, generated, generated[0]), atol=1e-6)
    kp = source.motion.fields["kp"].reshape(21, 3)
    m = result.motion
    np.testing.assert_allclose(transform_keypoints(kp, m.R, m.exp, m.scale, m.t), result.x_d, atol=1e-5)
    np.testing.assert_allclose(result.x_d[0], source.motion.keypoints()[0], atol=1e-5)
    still = mixed_motion(source, generated, generated[0], head_motion=0.0).motion
    assert np.allclose(still.R, m.R[0], atol=1e-6) and np.allclose(still.t, m.t[0], atol=1e-6)


@pytest.mark.parametrize("options, words", [
    (AudioMotionOptions(emotion="bored"), "unknown emotion"),
    (AudioMotionOptions(steps=0), "sampling steps"),
    (AudioMotionOptions(guidance=float("nan")), "guidance"),
    (AudioMotionOptions(head_motion=3.0), "head motion"),
    (AudioMotionOptions(eye_ball=(0.0,) * 5), "eye_ball"),
])
def test_bad_audio_options_are_named(options, words):
    with pytest.raises(InvalidRequest, match=words):
        options.validated()


@pytest.mark.triton
def test_a_portrait_animated_by_speech_has_one_frame_per_25th_of_a_second_and_repeats_per_seed(served):
    """Speech drives the portrait through the image animation (keypoint stage, render, paste-back, encoder) as a
    driving video would: 1.2 s of speech -> 30 frames; the same seed gives the same video bytes."""
    from orchestrator.face import make_analyzer
    from video_checks import playable_frames
    from orchestrator.options import AnimateOptions
    from orchestrator.pipeline.animate import animate
    from orchestrator.pipeline.audio_driving import AudioDriving
    from orchestrator.pipeline.image_source import ImageAnimation

    source_bytes = (EXAMPLES / "source" / "s0.jpg").read_bytes()
    options = AnimateOptions(audio=False)

    def video(seed: int) -> tuple[bytes, AudioDriving]:
        async def call(ctx):
            ctx.analyzer = make_analyzer(ctx.runner)
            driving = AudioDriving(ctx, speech(1.2), AudioMotionOptions(steps=2, seed=seed))
            animation = ImageAnimation(source_bytes, driving, options, ctx)
            parts = [r.video.data async for r in animate(animation, options, ctx) if r.HasField("video")]
            return b"".join(parts), driving

        return run(served, call)

    first, driving = video(5)
    assert playable_frames(first, BUILD / "audio-driven.mp4") == 30 == driving.total_frames == len(driving.result)
    assert video(5)[0] == first
    assert video(6)[0] != first


def test_pytorch_target_serves_the_audio_models_with_their_weights(tmp_path):
    """``--target pytorch``: each audio model's folder rebuilds its module from the travelling code and weights."""
    from export_scripts.model_repository import VERSION, parse_config
    from export_scripts.torch_serving import RuntimeOptions, ServedTorchModel, load_module

    request = SimpleNamespace(weights="synthetic", profile="tiny", seed=1, target="pytorch", output=tmp_path,
                              device="cpu")
    export_audio_models(request, {"profile": "tiny"}, lambda *_: None)
    rng = np.random.default_rng(0)
    audio = rng.standard_normal((2, 6480)).astype(np.float32)
    x, kp, cond = (rng.standard_normal(s).astype(np.float32) for s in ((2, 80, 265), (2, 265), (2, 80, 1103)))
    t = np.array([[999.0], [500.0]], np.float32)
    with torch.no_grad():
        encoder = torch_encoder(synthetic_hubert(TINY, 1))(audio)
        uncond, conditioned = torch_denoiser(synthetic_lmdm(TINY, 1))(x, kp, cond, t.reshape(-1))
    for name, inputs, expected in (("audio_encoder", [audio], [encoder]), ("lmdm", [x, kp, cond, t],
                                                                           [uncond, conditioned])):
        assert parse_config(tmp_path / name / "config.pbtxt").backend == "python"
        module = load_module(tmp_path / name / str(VERSION), "tiny", name)
        model = ServedTorchModel(module, [], RuntimeOptions())
        for ours, theirs in zip(model(inputs), expected):
            assert relative_l2(ours, theirs) <= 1e-5


def test_official_audio_weights_load_from_a_ditto_bundle_and_a_missing_encoder_is_named(tmp_path):
    """Ditto's LMDM checkpoint and a ``transformers`` HuBERT checkpoint (CTC head, old weight-norm names) under
    --weights load strictly; with only Ditto's ONNX encoder beside the LMDM the export names what to supply."""
    from export_scripts.audio_models import load_audio_networks
    from export_scripts.audio_networks import write_lmdm_checkpoint
    from export_scripts.checkpoints import CheckpointError

    hubert, lmdm = synthetic_hubert(TINY, 5), synthetic_lmdm(TINY, 5)
    write_lmdm_checkpoint(lmdm, tmp_path / "ditto_pytorch" / "models" / "lmdm_v0.4_hubert.pth")
    (tmp_path / "ditto_pytorch" / "aux_models").mkdir()
    (tmp_path / "ditto_pytorch" / "aux_models" / "hubert_streaming_fix_kv.onnx").write_bytes(b"onnx")
    with pytest.raises(CheckpointError, match="hubert_streaming_fix_kv.onnx is recognised but not served"):
        load_audio_networks(str(tmp_path), "tiny", 0)

    names = {"parametrizations.weight.original0": "weight_g", "parametrizations.weight.original1": "weight_v"}
    state = {"lm_head.weight": torch.zeros(32, 1024)}
    for key, value in hubert.state_dict().items():
        for new, old in names.items():
            key = key.replace(new, old)
        state["hubert." + key] = value
    (tmp_path / "hubert-large-ls960-ft").mkdir()
    torch.save(state, tmp_path / "hubert-large-ls960-ft" / "pytorch_model.bin")
    loaded = load_audio_networks(str(tmp_path), "tiny", 0)
    assert loaded.label.startswith("official")
    audio = torch.randn(1, 6480)
    with torch.no_grad():
        assert torch.equal(loaded.hubert(audio), hubert(audio))
    for name, value in lmdm.state_dict().items():
        assert torch.equal(loaded.lmdm.state_dict()[name], value)
