"""CPU cost of audio-to-motion in process, per second of speech: ``python -m export_scripts.audio_benchmark
--profiles tiny,full --threads 2``.

Times one audio-encoder window (alone and in a batch of 16) and one LMDM call (the unconditional and conditional
passes as one batch of two), each the minimum of ``--repeats`` runs (robust to other load on the machine), and scales
them by what one second of speech needs at 25 fps:

* audio encoder: 5 windows per second (one per 5 frames), batched offline, one at a time when streaming;
* LMDM offline: 25/70 windows per second (80-frame windows advancing by 70) x 50 steps;
* LMDM streaming: 2.5 windows per second (advancing by 10) x 10 steps.
"""
from __future__ import annotations

import argparse
import time
from typing import Callable

import torch

from .audio_networks import get_audio_profile, synthetic_hubert, synthetic_lmdm

FPS = 25
OFFLINE_WINDOWS, OFFLINE_STEPS = FPS / 70, 50
ONLINE_WINDOWS, ONLINE_STEPS = FPS / 10, 10
ENCODER_WINDOWS = FPS / 5


def fastest(call: Callable[[], object], repeats: int) -> float:
    call()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return min(times)


@torch.no_grad()
def measure(profile_name: str, repeats: int) -> dict[str, float]:
    profile = get_audio_profile(profile_name)
    hubert, lmdm = synthetic_hubert(profile, 0), synthetic_lmdm(profile, 0)
    one, sixteen = torch.randn(1, 6480), torch.randn(16, 6480)
    x, kp, cond, t = torch.randn(1, 80, 265), torch.randn(1, 265), torch.randn(1, 80, 1103), torch.tensor([999])
    window = fastest(lambda: hubert(one), repeats)
    batched = fastest(lambda: hubert(sixteen), repeats) / 16
    pair = fastest(lambda: lmdm.forward_pair(x, kp, cond, t), repeats)
    return {
        "encoder_window_ms": 1e3 * window,
        "encoder_window_batched_ms": 1e3 * batched,
        "lmdm_pair_ms": 1e3 * pair,
        "offline_encoder_s": ENCODER_WINDOWS * batched,
        "offline_lmdm_s": OFFLINE_WINDOWS * OFFLINE_STEPS * pair,
        "online_encoder_s": ENCODER_WINDOWS * window,
        "online_lmdm_s": ONLINE_WINDOWS * ONLINE_STEPS * pair,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", default="tiny,full")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch threads: {args.threads}; CPU seconds per second of speech (encoder + LMDM)")
    for name in args.profiles.split(","):
        r = measure(name, args.repeats)
        print(f"{name}: encoder window {r['encoder_window_ms']:.1f} ms ({r['encoder_window_batched_ms']:.1f} ms in a "
              f"batch of 16), LMDM pair {r['lmdm_pair_ms']:.1f} ms; offline {r['offline_encoder_s']:.3f} + "
              f"{r['offline_lmdm_s']:.3f} = {r['offline_encoder_s'] + r['offline_lmdm_s']:.3f} s; streaming "
              f"{r['online_encoder_s']:.3f} + {r['online_lmdm_s']:.3f} = "
              f"{r['online_encoder_s'] + r['online_lmdm_s']:.3f} s")


if __name__ == "__main__":
    main()
