"""The audio-to-motion pieces that need no golden vectors: the encoder windows, the DDIM schedule, window fusion and
pose smoothing, conditions, stitching, the streaming driver, the tiny profile and official-layout LMDM checkpoints."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from export_scripts.audio_networks import (TINY, load_lmdm_checkpoint, synthetic_hubert, synthetic_lmdm,
                                           torch_denoiser, torch_encoder, write_lmdm_checkpoint)
from export_scripts.checkpoints import CheckpointError
from orchestrator.audio import conditions, drivers, features, motion, sampler, stitch

F32 = np.float32


# -- features -------------------------------------------------------------------------------------------------------

def test_offline_windows_cover_the_clip_at_25_fps():
    audio = np.arange(16000, dtype=F32)  # 1 s -> 25 frames -> 5 windows of 5 frames
    windows = features.offline_windows(audio)
    assert windows.shape == (5, 6480)
    assert np.all(windows[0, :2000] == 0) and windows[0, 2000] == 0 and windows[0, 2001] == 1  # 2000 zeros lead
    assert windows[1, 0] == audio[3200 - 2000]  # one window every 3200 samples (5 frames)
    assert features.num_frames(16001) == 26


def test_encoder_frames_pool_in_pairs_from_the_window_middle():
    encoding = np.arange(20, dtype=F32)[None, :, None].repeat(3, axis=2)  # frame i holds value i
    pooled = features.pool_encoding(encoding)
    np.testing.assert_array_equal(pooled[0, :, 0], [6.5, 8.5, 10.5, 12.5, 14.5])  # frames 6..15 -> 5 means


def test_stream_windows_do_not_depend_on_chunk_sizes():
    audio = np.random.default_rng(0).standard_normal(20000).astype(F32)
    at_once = features.StreamWindows()
    whole = np.concatenate([at_once.push(audio), at_once.finish()])
    stream = features.StreamWindows()
    parts = [stream.push(audio[i:i + 777]) for i in range(0, len(audio), 777)] + [stream.finish()]
    np.testing.assert_array_equal(np.concatenate(parts), whole)
    assert len(whole) == -(-(len(audio) + 1920) // 3200)  # one window per 3200 samples, 1920 zeros in front
    np.testing.assert_array_equal(whole[0, 1920:], audio[:6480 - 1920])


# -- sampler --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("steps", [1, 7, 10, 33, 50, 1000])
def test_ddim_schedule_steps_and_shapes(steps):
    s = sampler.ddim_schedule(steps)
    expected = torch.linspace(-1, 999, steps=steps + 1).int().tolist()[::-1]  # the official time grid
    assert s.times.tolist() == expected[:-1] and s.next_times.tolist() == expected[1:]
    assert s.times[0] == 999 and s.next_times[-1] == -1
    assert s.alpha_next_sqrt.shape == s.sigma.shape == s.c.shape == (steps - 1,)
    a_next = s.alpha_next_sqrt.astype(np.float64) ** 2  # x_next's variance budget: a_next + c^2 + sigma^2 = 1
    np.testing.assert_allclose(a_next + s.c.astype(np.float64) ** 2 + s.sigma.astype(np.float64) ** 2, 1, atol=1e-5)


def test_cosine_schedule_decreases_from_one_to_zero():
    acp = sampler.cosine_alphas_cumprod()
    assert acp.shape == (1000,) and acp[0] > 0.9999 and acp[-1] < 1e-4 and np.all(np.diff(acp) < 0)


def test_seeded_noise_repeats_and_differs_between_seeds():
    a, b, c = (sampler.Noise.seeded(seed, 10, (80, 265)) for seed in (7, 7, 8))
    np.testing.assert_array_equal(a.step, b.step)
    np.testing.assert_array_equal(a.initial(0), b.initial(0))
    assert a.step.shape == (9, 1, 80, 265) and not np.array_equal(a.step, c.step)


def test_guidance_combines_the_two_passes():
    calls = []

    def denoise(x, kp_cond, cond, t):
        calls.append(int(t[0]))
        return np.zeros_like(x), np.ones_like(x)  # uncond 0, cond 1 -> guided x0 = w

    schedule = sampler.ddim_schedule(4)
    runs = [sampler.DdimSampler(denoise, schedule, sampler.Noise.seeded(7, 4, (80, 265)), guidance=2.5)
            .sample(np.zeros((1, 265), F32), np.zeros((1, 80, 1103), F32)) for _ in range(2)]
    np.testing.assert_array_equal(runs[0], np.full((1, 80, 265), 2.5, F32))
    assert calls == schedule.times.tolist() * 2


# -- motion ---------------------------------------------------------------------------------------------------------

def test_fuse_cross_fades_linearly_over_the_overlap():
    np.testing.assert_allclose(motion.fuse_weights(10), np.arange(10) / 10)
    sequence, window = np.ones((80, 4), F32), np.zeros((80, 4), F32)
    fused = motion.fuse(sequence, window, fuse_length=10, valid=70)
    assert fused.shape == (150, 4)
    np.testing.assert_allclose(fused[70:80, 0], 1 - np.arange(10) / 10, rtol=1e-6)  # old frames fade into the new window's
    assert np.all(fused[:70] == 1) and np.all(fused[80:] == 0)


def test_online_fuse_takes_the_frames_just_before_the_valid_part():
    window = np.arange(80, dtype=F32)[:, None]
    fused = motion.fuse(np.full((80, 1), 100, F32), window, fuse_length=10, valid=10)
    np.testing.assert_allclose(fused[70:80, 0], 100 * (1 - np.arange(10) / 10) + np.arange(60, 70) * np.arange(10) / 10)
    np.testing.assert_array_equal(fused[80:, 0], np.arange(70, 80))


def test_pose_smoothing_is_a_three_frame_mean_of_the_pose_only():
    seq = np.random.default_rng(1).standard_normal((6, 265)).astype(F32)
    out = motion.smooth_pose(seq, 0, 6)
    np.testing.assert_allclose(out[0, :202], seq[0:2, :202].mean(0), rtol=1e-6)
    np.testing.assert_allclose(out[3, :202], seq[2:5, :202].mean(0), rtol=1e-6)
    np.testing.assert_array_equal(out[:, 202:], seq[:, 202:])
    np.testing.assert_array_equal(motion.smooth_pose(seq, 2, 3)[[0, 1, 3, 4, 5]], seq[[0, 1, 3, 4, 5]])


def test_motion_vector_round_trip():
    fields = {"scale": [[1.5]], "pitch": np.ones((1, 66)), "yaw": np.zeros(66), "roll": np.ones(66), "t": [1, 2, 3],
              "exp": np.arange(63)}
    v = motion.motion_vector(fields)
    assert v.shape == (265,) and v[0] == np.float32(0.5)
    back = motion.motion_fields(v[None])
    assert back["scale"][0, 0] == 1.5 and back["exp"][0, 62] == 62
    with pytest.raises(ValueError, match="pitch"):
        motion.motion_vector({**fields, "pitch": np.ones(65)})


# -- conditions and stitch ------------------------------------------------------------------------------------------

def test_emotion_vector():
    neutral = conditions.emotion_vector("neutral")
    assert neutral.argmax() == 4 and abs(neutral.sum() - 1) < 1e-6
    np.testing.assert_array_equal(conditions.emotion_vector([3, 4])[[3, 4]], conditions.emotion_vector([3, 4])[3])
    with pytest.raises(ValueError, match="unknown emotion"):
        conditions.emotion_vector(9)


def test_conditions_layout():
    source = conditions.SourceConditions(np.full(2, 2, F32), np.full(6, 3, F32), np.full(63, 4, F32))
    cond = conditions.frame_conditions(np.ones((5, 1024), F32), source)
    assert cond.shape == (5, conditions.CONDITION_DIM)
    np.testing.assert_array_equal(cond[:, 1032:1034], 2)
    np.testing.assert_array_equal(cond[:, 1034:1040], 3)
    np.testing.assert_array_equal(cond[:, 1040:], 4)


def random_source(seed: int = 0) -> stitch.SourceMotion:
    rng = np.random.default_rng(seed)
    return stitch.SourceMotion.from_raw({"scale": [1.4], "pitch": rng.standard_normal(66), "yaw": rng.standard_normal(66),
                                         "roll": rng.standard_normal(66), "t": 0.05 * rng.standard_normal(3),
                                         "exp": 0.02 * rng.standard_normal(63), "kp": 0.3 * rng.standard_normal(63)})


def test_generated_motion_equal_to_its_reference_keeps_the_source_keypoints():
    source = random_source()
    generated = np.random.default_rng(2).standard_normal((3, 265)).astype(F32)
    x_d = stitch.stitch(source, np.repeat(generated[:1], 3, axis=0), generated[0])
    np.testing.assert_allclose(x_d, np.repeat(source.keypoints(), 3, axis=0), atol=1e-6)


def test_audio_moves_only_lip_and_eye_expression():
    source = random_source()
    reference = source.vector()
    moved = reference.copy()
    moved[-63:] += 0.05  # every expression component
    mixed = stitch.mix(source, moved[None], reference)
    changed = np.flatnonzero(np.abs(mixed["exp"][0] - source.fields["exp"][0]).reshape(21, 3).max(1) > 0)
    assert changed.tolist() == sorted((6, 12, 14, 17, 19, 20, 11, 13, 15, 16, 18))


# -- tiny networks, the streaming driver, checkpoints ---------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_lmdm():
    return synthetic_lmdm(TINY, 5)


def stream_motion(lmdm, chunks: list[np.ndarray]) -> np.ndarray:
    source = random_source()
    source_conditions = conditions.SourceConditions(np.ones(2, F32), np.zeros(6, F32), source.fields["kp"][0])
    generator = drivers.MotionGenerator(
        sampler.DdimSampler(torch_denoiser(lmdm), sampler.ddim_schedule(10), sampler.Noise.seeded(3, 10, (80, 265))),
        drivers.ONLINE, source.vector())
    stream = drivers.StreamingMotion(generator, lambda f: conditions.frame_conditions(f, source_conditions),
                                     np.zeros((70, 1024), F32))
    return np.concatenate([stream.push(c) for c in chunks] + [stream.finish()])


def test_streaming_motion_does_not_depend_on_how_features_arrive(tiny_lmdm):
    feats = np.random.default_rng(4).standard_normal((47, 1024)).astype(F32)
    by_five = stream_motion(tiny_lmdm, [feats[i:i + 5] for i in range(0, 47, 5)])
    at_once = stream_motion(tiny_lmdm, [feats])
    # 70 + 47 frames: windows start at 0, 10, 20, 30 and a last, padded one at 40; each window after the first
    # (which sets the reference) emits 10 frames, and the last one also the 10 it would have cross-faded
    assert by_five.shape == (50, 265)
    np.testing.assert_allclose(by_five, at_once, rtol=1e-5, atol=1e-6)


def test_offline_motion_has_one_frame_per_condition(tiny_lmdm):
    source = random_source()
    generator = drivers.MotionGenerator(
        sampler.DdimSampler(torch_denoiser(tiny_lmdm), sampler.ddim_schedule(3), sampler.Noise.seeded(1, 3, (80, 265))),
        drivers.OFFLINE, source.vector())
    out = drivers.offline_motion(generator, np.zeros((151, 1103), F32))
    assert out.shape == (151, 265) and generator.windows == 3 and np.all(np.isfinite(out))


def test_tiny_profile_runs_the_same_code_smaller():
    hubert = synthetic_hubert(TINY, 0)
    assert sum(p.numel() for p in hubert.parameters()) < 10_000_000  # full: 315 M
    feats = features.offline_features(torch_encoder(hubert), np.zeros(8000, F32))
    assert feats.shape == (13, TINY.hubert.hidden_size)


def test_official_layout_checkpoint_loads_strictly(tmp_path, tiny_lmdm):
    path = tmp_path / "lmdm_v0.4_hubert.pth"
    write_lmdm_checkpoint(tiny_lmdm, path)
    assert list(torch.load(path, weights_only=True)) == ["model_state_dict"]
    loaded = load_lmdm_checkpoint(path, TINY)
    for name, tensor in tiny_lmdm.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name

    state = tiny_lmdm.state_dict()
    del state["final_layer.bias"]
    torch.save({"model_state_dict": state}, path)
    with pytest.raises(CheckpointError, match="missing keys: final_layer.bias"):
        load_lmdm_checkpoint(path, TINY)
    torch.save(tiny_lmdm.state_dict(), path)
    with pytest.raises(CheckpointError, match="model_state_dict"):
        load_lmdm_checkpoint(path, TINY)
    with pytest.raises(CheckpointError, match="does not match"):  # a tiny file does not fit the full-size network
        write_lmdm_checkpoint(tiny_lmdm, path)
        load_lmdm_checkpoint(path)


def test_tiny_networks_export_to_onnx_with_a_dynamic_batch(tmp_path, tiny_lmdm):
    """Both networks trace to ONNX (what Triton will serve) and agree with PyTorch at another batch size."""
    import warnings

    import onnxruntime as ort

    from export_scripts.onnx_export import OPSET, relative_l2

    rng = torch.Generator().manual_seed(0)
    hubert = synthetic_hubert(TINY, 0)
    cases = {
        "lmdm": (tiny_lmdm, ["x", "cond_frame", "cond", "t", "keep"],
                 lambda b: (torch.randn(b, 80, 265, generator=rng), torch.randn(b, 265, generator=rng),
                            torch.randn(b, 80, 1103, generator=rng), torch.randint(0, 1000, (b,), generator=rng),
                            torch.arange(b) % 2 == 0)),
        "hubert": (hubert, ["samples"], lambda b: (torch.randn(b, 6480, generator=rng),)),
    }
    for name, (module, inputs, example) in cases.items():
        path = tmp_path / f"{name}.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, example(2), str(path), input_names=inputs, output_names=["out"],
                              dynamic_axes={k: {0: "batch"} for k in [*inputs, "out"]}, opset_version=OPSET,
                              dynamo=False)
        feeds = example(3)
        (ours,) = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
            None, {k: v.numpy() for k, v in zip(inputs, feeds)})
        with torch.no_grad():
            assert relative_l2(ours, module(*feeds).numpy()) <= 1e-5, name
