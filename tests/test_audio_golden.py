"""The audio-to-motion chain against every complete ``audio_golden_<X>`` case (Ditto's official code on synthetic
weights, see its README): the project's HuBERT and LMDM networks with the case's synthetic weights, and the
orchestrator's numpy math around them (features, conditions, DDIM sampler with the recorded noise, window fusion and
smoothing, stitching), offline and streaming. Every stage within rel-L2 1e-4. The full-size chain runs once per case
(module fixture) and every test checks a stage of it."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from audio_golden import AudioGoldenCase, audio_cases, run_chain
from export_scripts.audio_networks import FULL, seeded_init_, synthetic_hubert, synthetic_lmdm
from export_scripts.networks.lmdm import MotionDecoder
from export_scripts.networks.hubert import HubertModel
from export_scripts.onnx_export import relative_l2
from orchestrator.audio import stitch

TOLERANCE = 1e-4


@pytest.fixture(scope="module", params=audio_cases())
def case(request) -> AudioGoldenCase:
    return request.param


@pytest.fixture(scope="module")
def chain(case) -> dict:
    seed = case.metadata["seed_weights"]
    return run_chain(case, synthetic_hubert(FULL, seed), synthetic_lmdm(FULL, seed))


def close(ours, theirs, what: str) -> None:
    assert np.shape(ours) == np.shape(theirs), f"{what}: shape {np.shape(ours)} != {np.shape(theirs)}"
    error = relative_l2(ours, theirs)
    assert error <= TOLERANCE, f"{what}: relative L2 {error:.2e}"


def test_lmdm_synthetic_weights_follow_the_golden_rule(case):
    """Every tensor of the full-size LMDM state dict has the SHA-256 the case's metadata records."""
    meta = case.metadata
    model = seeded_init_(MotionDecoder(FULL.lmdm), meta["seed_weights"])
    state = model.state_dict()
    assert sum(p.numel() for p in model.parameters()) == meta["lmdm_num_parameters"]
    assert list(state) == list(meta["lmdm_state_dict_sha256_16"])
    wrong = [name for name, digest in meta["lmdm_state_dict_sha256_16"].items()
             if hashlib.sha256(state[name].numpy().tobytes()).hexdigest()[:16] != digest]
    assert not wrong


def test_hubert_has_the_golden_parameter_count(case):
    with torch.device("meta"):  # shapes only, no memory
        model = HubertModel(FULL.hubert)
    assert sum(p.numel() for p in model.parameters()) == case.metadata["hubert_num_parameters"]


@pytest.mark.full
class TestOffline:
    def test_encoder_windows_and_hubert_features(self, case, chain):
        g = case.load("hubert_offline")
        np.testing.assert_array_equal(chain["offline_windows"], g["in_chunks"])
        close(chain["offline_encoding"], g["out_encoding"], "encoding")
        close(chain["offline_features"], g["out_aud_feat"], "audio features")

    def test_conditions(self, case, chain):
        close(chain["offline_conditions"], case.load("lmdm_offline")["out_cond_all"], "conditions")

    def test_schedule(self, case, chain):
        g, s = case.load("lmdm_offline"), chain["offline_schedule"]
        np.testing.assert_array_equal(np.stack([s.times, s.next_times], 1), g["sched_time_pairs"])
        for name in ("alpha_next_sqrt", "sigma", "c", "alphas_cumprod"):
            close(getattr(s, name), g[f"sched_{name}"], name)

    def test_each_window_inputs_and_first_step(self, case, chain):
        check_windows(case.load("lmdm_offline"), chain["offline_recorder"])

    def test_motion_sequence(self, case, chain):
        g = case.load("lmdm_offline")
        check_sequence_after_each_window(g, chain["offline_after"])
        close(chain["offline_motion"], g["out_motion_seq_final"], "motion")

    def test_stitched_keypoints(self, case, chain):
        g = case.load("motion_offline")
        close(chain["source"].keypoints(), g["out_x_s"], "x_s")
        check_mixed(g, chain["offline_mixed"])
        close(chain["offline_x_d"], g["out_x_d"][:, 0], "x_d")


@pytest.mark.full
class TestStreaming:
    def test_encoder_windows_and_hubert_features(self, case, chain):
        g = case.load("hubert_online")
        np.testing.assert_array_equal(chain["online_windows"], g["in_chunks"])
        close(chain["online_encoding"], g["out_encoding"], "encoding")
        close(chain["online_silence"], g["out_silence_buffer_feat"], "silence buffer")
        close(chain["online_stream_features"], g["out_stream_feat"], "stream features")

    def test_each_window_inputs_and_first_step(self, case, chain):
        check_windows(case.load("lmdm_online"), chain["online_recorder"])

    def test_emitted_motion(self, case, chain):
        g = case.load("lmdm_online")
        check_sequence_after_each_window(g, chain["online_after"])
        close(chain["online_motion"], g["out_motion_seq_emitted"], "emitted motion")

    def test_stitched_keypoints(self, case, chain):
        g = case.load("motion_online")
        d0 = np.concatenate([g[f"out_d0_{k}"].reshape(-1) for k in ("scale", "pitch", "yaw", "roll", "t", "exp")])
        close(chain["online_reference"], d0 - np.eye(1, 265, 0, np.float32)[0], "reference d0")
        check_mixed(g, chain["online_mixed"])
        close(chain["online_x_d"], g["out_x_d"][:, 0], "x_d")


def check_sequence_after_each_window(g: dict, after: list) -> None:
    """The fused and smoothed sequence after each window (the golden keeps at most 160 frames, as we do)."""
    assert len(after) == len(g["win_x_T"])
    for w, sequence in enumerate(after):
        close(sequence[-160:], g[f"out_res_kp_seq_after_win{w}"][0], f"sequence after window {w}")


def check_mixed(g: dict, mixed: dict) -> None:
    """The fields fed to the keypoint transform (angles as logits, then in degrees)."""
    for name in ("scale", "pitch", "yaw", "roll", "t", "exp", "kp"):
        close(mixed[name], g[f"out_mixed_{name}"][:, 0], f"mixed {name}")
    for name in ("pitch", "yaw", "roll"):
        close(stitch.bins_to_degrees(mixed[name]), g[f"out_mixed_{name}_deg"][:, 0], f"{name} degrees")


def check_windows(g: dict, recorder) -> None:
    windows = len(g["win_x_T"])
    assert len(recorder.inputs) == windows and len(recorder.step0) == windows
    for w in range(windows):
        x_T, kp_cond, cond = recorder.inputs[w]
        close(kp_cond, g["win_kp_cond"][w], f"window {w} kp_cond")
        close(cond, g["win_aud_cond"][w], f"window {w} conditions")
        for i, name in enumerate(("uncond", "cond", "x_start", "pred_noise")):
            close(recorder.step0[w][i], g[f"win_step0_{name}"][w], f"window {w} step 0 {name}")
    close(np.stack(recorder.trajectory), g["win0_traj_x"], "window 0 trajectory")
