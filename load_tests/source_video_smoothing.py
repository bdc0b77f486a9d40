"""The source-video smoother, streamed vs whole-clip: how far the fixed-lag smoother AnimatePortrait runs
(``orchestrator.smoothing.FixedLagKalman``) lands from the official whole-clip Kalman smoother, per variance.

    python -m load_tests.source_video_smoothing            # official templates as source and driving motion

The motion is real head motion: official templates (extracted by the official code with the official weights).
One plays the source video's own motion, another the driving motion; the rows the official code smooths (rotation
``R_d_i R_d_0^T R_s_i`` and expression ``exp_s_i + exp_d_i - exp_d_0``, ``keypoints.VideoSourceComposer``) go through
both smoothers, the streamed one fed in 8-frame chunks as the server does. Reported per variance: the look-ahead in
frames (the output's extra delay), how much smoothing moves the values at all (max |smoothed - raw|) and the largest
difference between the streamed and the whole-clip result, for the rotation entries and the expression values.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from client.templates import read_template
from orchestrator.keypoints import KeypointOptions, VideoSourceComposer
from orchestrator.smoothing import FixedLagKalman, kalman_smooth
from orchestrator.templates import from_proto

EXAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "examples"
CHUNK = 8
VARIANCES = (3e-7, 1e-6, 1e-5, 1e-4, 1e-3)
PAIRS = (("shake_face.pkl", "d7.pkl"), ("laugh.pkl", "wink.pkl"))  # (source motion, driving motion)


def motion_of(name: str):
    return from_proto(read_template(EXAMPLES / "templates" / name), 100_000).motion


def streamed(rows: np.ndarray, variance: float) -> np.ndarray:
    smoother = FixedLagKalman(variance)
    parts = [smoother.push(rows[i:i + CHUNK]) for i in range(0, len(rows), CHUNK)]
    return np.concatenate(parts + [smoother.flush()])


def study(source_name: str, driving_name: str) -> list[dict]:
    source, driving = motion_of(source_name), motion_of(driving_name)
    n = min(len(source), len(driving))
    rows = VideoSourceComposer(KeypointOptions(), True).targets(source[0:n], driving[0:n])
    results = []
    for variance in VARIANCES:
        whole, stream = kalman_smooth(rows, variance), streamed(rows, variance)
        lag = FixedLagKalman(variance).lag
        entry = {"source": source_name, "driving": driving_name, "frames": n, "variance": variance, "lag": lag}
        for part, cols in (("R", slice(0, 9)), ("exp", slice(9, 72))):
            entry[f"{part}_effect"] = float(np.abs(whole[:, cols] - rows[:, cols]).max())
            entry[f"{part}_diff"] = float(np.abs(stream[:, cols] - whole[:, cols]).max())
        results.append(entry)
    return results


def table(results: list[dict]) -> str:
    lines = ["| source / driving motion | variance | look-ahead (frames) | R: smoothing effect | R: streamed - whole "
             "| exp: smoothing effect | exp: streamed - whole |", "|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['source']} / {r['driving']} ({r['frames']} f) | {r['variance']:g} | {r['lag']} | "
                     f"{r['R_effect']:.2e} | {r['R_diff']:.1e} | {r['exp_effect']:.2e} | {r['exp_diff']:.1e} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, default=None, help="also write the figures as JSON")
    args = parser.parse_args(argv)
    results = [r for source, driving in PAIRS for r in study(source, driving)]
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
