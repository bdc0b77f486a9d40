"""Audio-to-motion through Triton vs in process: ``python -m load_tests.audio_cost --triton-url HOST:PORT
--lmdm-profile tiny|full --encoder-profile tiny|full [--seconds 1 --steps 50 --repeats 5]``.

Against a Triton serving a repository exported with ``liveportrait-export --audio`` (the profiles say which sizes it
serves, so the in-process reference uses the same networks). Prints, each the minimum of ``--repeats`` runs:

* one DDIM step (``lmdm``: both guidance passes) through Triton, in process with PyTorch, and (``--repository``)
  the served ONNX file run by onnxruntime in process: Triton minus onnxruntime is the per-step cost of calling the
  denoiser through Triton (gRPC, queue, Python backend) rather than running the loop inside one served model;
* the motion of ``--seconds`` of speech (encoder windows + every window's ``--steps`` steps) through Triton
  (``audio_driving.audio_motion``) and in process (``audio_driving.generate`` with the PyTorch networks), as
  seconds per second of speech.
"""
from __future__ import annotations

import argparse
import asyncio
import time

import numpy as np
import torch

from export_scripts.audio_networks import get_audio_profile, synthetic_hubert, synthetic_lmdm, torch_denoiser, \
    torch_encoder
from orchestrator.audio.stitch import SourceMotion
from orchestrator.metrics import Metrics
from orchestrator.pipeline.audio_driving import AudioMotionOptions, AudioSource, audio_motion, generate
from orchestrator.pipeline.context import RequestContext, uncounted
from orchestrator.timing import Timings
from orchestrator.triton_client import RequestRunner, TritonConfig, TritonRunner, Traffic


def a_source(rng: np.random.Generator) -> AudioSource:
    raw = {"scale": np.full((1, 1), 1.5, np.float32), "t": 0.05 * rng.standard_normal((1, 3)).astype(np.float32),
           "exp": 0.02 * rng.standard_normal((1, 63)).astype(np.float32),
           "kp": 0.3 * rng.standard_normal((1, 63)).astype(np.float32)}
    raw.update({a: rng.standard_normal((1, 66)).astype(np.float32) for a in ("pitch", "yaw", "roll")})
    return AudioSource(SourceMotion.from_raw(raw), np.array([0.9, 0.9], np.float32), np.zeros(6, np.float32))


def fastest(times: list[float]) -> float:
    return min(times)


async def served(url: str, audio: np.ndarray, source: AudioSource, options: AudioMotionOptions,
                 repeats: int) -> tuple[float, float]:
    runner = TritonRunner(TritonConfig(url=url), Metrics())
    ctx = RequestContext(RequestRunner(runner, Traffic(), None), None, Timings(), uncounted)
    rng = np.random.default_rng(1)
    step_inputs = {"x_t": rng.standard_normal((1, 80, 265)).astype(np.float32),
                   "kp_cond": rng.standard_normal((1, 265)).astype(np.float32),
                   "cond": rng.standard_normal((1, 80, 1103)).astype(np.float32),
                   "t": np.array([[999.0]], np.float32)}
    try:
        await ctx.runner.infer("lmdm", step_inputs)  # warm-up
        step = []
        for _ in range(repeats):
            started = time.perf_counter()
            await ctx.runner.infer("lmdm", step_inputs)
            step.append(time.perf_counter() - started)
        await audio_motion(ctx, audio, source, options)
        clip = []
        for _ in range(max(1, repeats // 2)):
            started = time.perf_counter()
            await audio_motion(ctx, audio, source, options)
            clip.append(time.perf_counter() - started)
        return fastest(step), fastest(clip)
    finally:
        await runner.close()


@torch.no_grad()
def in_process(lmdm_profile: str, encoder_profile: str, audio: np.ndarray, source: AudioSource,
               options: AudioMotionOptions, repeats: int) -> tuple[float, float]:
    encode = torch_encoder(synthetic_hubert(get_audio_profile(encoder_profile), 0))
    denoise = torch_denoiser(synthetic_lmdm(get_audio_profile(lmdm_profile), 0))
    rng = np.random.default_rng(1)
    x, kp, cond = (rng.standard_normal(s).astype(np.float32) for s in ((1, 80, 265), (1, 265), (1, 80, 1103)))
    t = np.array([999], np.int64)
    denoise(x, kp, cond, t)
    step = []
    for _ in range(repeats):
        started = time.perf_counter()
        denoise(x, kp, cond, t)
        step.append(time.perf_counter() - started)
    clip = []
    for _ in range(max(1, repeats // 2)):
        started = time.perf_counter()
        generate(encode, denoise, audio, source, options)
        clip.append(time.perf_counter() - started)
    return fastest(step), fastest(clip)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--triton-url", required=True)
    parser.add_argument("--lmdm-profile", choices=["tiny", "full"], default="tiny")
    parser.add_argument("--encoder-profile", choices=["tiny", "full"], default="tiny")
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--repository", help="the served repository: also time its lmdm ONNX file in process")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    audio = (0.1 * rng.standard_normal(int(args.seconds * 16000))).astype(np.float32)
    source = a_source(rng)
    options = AudioMotionOptions(steps=args.steps, seed=0)
    step_served, clip_served = asyncio.run(served(args.triton_url, audio, source, options, args.repeats))
    step_local, clip_local = in_process(args.lmdm_profile, args.encoder_profile, audio, source, options, args.repeats)
    print(f"lmdm {args.lmdm_profile}, encoder {args.encoder_profile}, torch threads {args.threads}")
    print(f"one DDIM step: Triton {1e3 * step_served:.1f} ms, in process {1e3 * step_local:.1f} ms "
          f"")
    if args.repository:
        import onnxruntime as ort

        session = ort.InferenceSession(f"{args.repository}/lmdm/1/model.onnx", providers=["CPUExecutionProvider"])
        x, kp, cond = (rng.standard_normal(s).astype(np.float32) for s in ((1, 80, 265), (1, 265), (1, 80, 1103)))
        feed = {"x_t": x, "kp_cond": kp, "cond": cond, "t": np.array([[999.0]], np.float32)}
        session.run(None, feed)
        times = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            session.run(None, feed)
            times.append(time.perf_counter() - started)
        print(f"one DDIM step, the served ONNX file in process (onnxruntime): {1e3 * fastest(times):.1f} ms "
              f"(Triton adds {1e3 * (step_served - fastest(times)):.1f} ms per step)")
    print(f"{args.seconds:g} s of speech, {args.steps} steps: Triton {clip_served:.2f} s, in process {clip_local:.2f} s "
          f"({clip_served / args.seconds:.2f} / {clip_local / args.seconds:.2f} s per second of speech)")


if __name__ == "__main__":
    main()
