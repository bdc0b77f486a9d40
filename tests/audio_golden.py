"""The audio golden cases in ../shared/reference: every ``audio_golden_<X>/`` folder (Ditto's official
audio-to-motion code on synthetic weights; its README holds the chain, the settings and the weight rule), and the
project's own chain run once per case on the same synthetic weights, keeping every stage the goldens hold."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference"
STAGES = ("audio", "source", "hubert_offline", "hubert_online", "lmdm_offline", "lmdm_online", "motion_offline",
          "motion_online")


@dataclass(frozen=True)
class AudioGoldenCase:
    name: str  # "A", "B", ...
    folder: Path

    def load(self, stage: str) -> dict[str, np.ndarray]:
        with np.load(self.folder / f"case{self.name}_{stage}.npz") as data:
            return {key: data[key] for key in data.files}

    @property
    def metadata(self) -> dict:
        return json.loads((self.folder / "metadata.json").read_text())

    def complete(self) -> bool:
        return (self.folder / "metadata.json").is_file() and all(
            (self.folder / f"case{self.name}_{stage}.npz").is_file() for stage in STAGES)


def audio_cases() -> list:
    """pytest parameters, one per complete case (id ``case<X>``); none is an error (the module fails to collect)."""
    found = [AudioGoldenCase(folder.name.removeprefix("audio_golden_"), folder)
             for folder in sorted(REFERENCE.glob("audio_golden_*")) if folder.is_dir()]
    found = [pytest.param(case, id=f"case{case.name}") for case in found if case.complete()]
    if not found:
        raise FileNotFoundError(f"no complete audio golden case under {REFERENCE}")
    return found


@dataclass
class Recorder:
    """Wraps a denoiser: keeps each window's inputs and step-0 outputs, and window 0's trajectory."""

    denoise: object
    first_step: int = 999
    inputs: list = field(default_factory=list)  # (x_T, kp_cond, cond) per window
    step0: list = field(default_factory=list)  # (uncond, cond, x0, eps) per window
    trajectory: list = field(default_factory=list)  # x fed to each step of window 0

    def __call__(self, x, kp_cond, cond, t):
        if int(t[0]) == self.first_step:
            self.inputs.append((x, kp_cond, cond))
        return self.denoise(x, kp_cond, cond, t)

    def observer(self, window: int):
        def observe(step, x, uncond, conditioned, x0, eps):
            if step == 0:
                self.step0.append((uncond, conditioned, x0, eps))
            if window == 0:
                self.trajectory.append(x)
        return observe


def recording_generator(*args):
    """A ``MotionGenerator`` that keeps the motion sequence after each window (``.after``)."""
    from orchestrator.audio import drivers

    class Recording(drivers.MotionGenerator):
        after: list

        def add_window(self, cond, observe=None):
            sequence = super().add_window(cond, observe)
            self.after.append(sequence.copy())
            return sequence

    generator = Recording(*args)
    generator.after = []
    return generator


def run_chain(case: AudioGoldenCase, hubert, lmdm) -> dict:
    """The project's chain on ``case``: HuBERT features, conditions, offline and streaming motion (the goldens'
    recorded noise injected), stitched keypoints. ``hubert``/``lmdm``: the PyTorch networks with the case's
    synthetic weights."""
    from export_scripts.audio_networks import torch_denoiser, torch_encoder
    from orchestrator.audio import conditions, drivers, features, sampler, stitch

    meta, src = case.metadata, case.load("source")
    audio = case.load("audio")["in_audio_16k"]
    calls: list[np.ndarray] = []

    def encode(windows):  # the in-process encoder, keeping what it returns
        calls.append(torch_encoder(hubert)(windows))
        return calls[-1]

    source = stitch.SourceMotion.from_raw({k.removeprefix("in_x_s_info_"): v for k, v in src.items()
                                           if k.startswith("in_x_s_info_")})
    source_conditions = conditions.SourceConditions(src["in_eye_open"], src["in_eye_ball"],
                                                    source.fields["kp"].reshape(-1))
    emotion = conditions.emotion_vector(conditions.NEUTRAL)
    out: dict = {"source": source}

    # offline: the whole clip
    out["offline_windows"] = features.offline_windows(audio)
    out["offline_features"] = features.offline_features(encode, audio)
    out["offline_encoding"] = np.concatenate(calls)
    out["offline_conditions"] = conditions.frame_conditions(out["offline_features"], source_conditions, emotion)
    golden = case.load("lmdm_offline")
    recorder = Recorder(torch_denoiser(lmdm))
    schedule = sampler.ddim_schedule(meta["offline_setup"]["sampling_timesteps"])
    generator = recording_generator(
        sampler.DdimSampler(recorder, schedule, sampler.Noise.fixed(golden["noise_list"], golden["win_x_T"])),
        drivers.OFFLINE, source.vector())
    out["offline_schedule"] = schedule
    out["offline_motion"] = drivers.offline_motion(generator, out["offline_conditions"], recorder.observer)
    out["offline_recorder"] = recorder
    out["offline_after"] = generator.after
    out["offline_mixed"] = stitch.mix(source, out["offline_motion"], out["offline_motion"][0])
    out["offline_x_d"] = stitch.stitch(source, out["offline_motion"], out["offline_motion"][0])

    # online: a stream of encoder windows, 5 feature frames at a time
    stream = features.StreamWindows()
    windows = np.concatenate([stream.push(audio), stream.finish()])
    silence_windows = features.offline_windows(np.zeros(drivers.ONLINE.overlap * 640, np.float32))
    out["online_windows"] = np.concatenate([silence_windows, windows])
    calls.clear()
    out["online_silence"] = features.silence_features(encode, drivers.ONLINE.overlap)
    out["online_stream_features"] = features.encode_windows(encode, windows)
    out["online_encoding"] = np.concatenate(calls)
    golden = case.load("lmdm_online")
    recorder = Recorder(torch_denoiser(lmdm))
    schedule = sampler.ddim_schedule(meta["online_setup"]["sampling_timesteps"])
    generator = recording_generator(
        sampler.DdimSampler(recorder, schedule, sampler.Noise.fixed(golden["noise_list"], golden["win_x_T"])),
        drivers.ONLINE, source.vector())
    streaming = drivers.StreamingMotion(
        generator, lambda f: conditions.frame_conditions(f, source_conditions, emotion), out["online_silence"],
        recorder.observer)
    emitted = [streaming.push(chunk) for chunk in out["online_stream_features"]] + [streaming.finish()]
    out["online_motion"] = np.concatenate(emitted)
    out["online_recorder"] = recorder
    out["online_after"] = generator.after
    out["online_reference"] = streaming.reference
    out["online_mixed"] = stitch.mix(source, out["online_motion"], streaming.reference)
    out["online_x_d"] = stitch.stitch(source, out["online_motion"], streaming.reference)
    return out
