"""Steady motion, measured: jitter of a still-ish stretch and lag on a head turn, raw vs ``options.smoothing``.

    python -m load_tests.smoothing_study                                     # the official templates (real motion)
    python -m load_tests.smoothing_study --template ../shared/examples/templates/d7.pkl --still 60:100
    python -m load_tests.smoothing_study --video ../shared/examples/driving/d0.mp4 --server localhost:50051

The motion is a motion template: an official one (extracted by the official code with the official weights, i.e.
real head motion) or ExtractMotion's template of a driving video (``PortraitClient.extract_motion``; with the
synthetic weights of the tiny demo repository its keypoints are not a head's motion, so those figures only show the
filter at work on some signal). The smoother is ``orchestrator.smoothing.MotionSmoother``, the one AnimatePortrait
runs, fed chunk by chunk (8 frames) from the first frame, at the template's fps.

* jitter: the standard deviation of the frame-to-frame differences over the still stretch, per group of values:
  the head angles pitch/yaw/roll (degrees, from the rotation matrices), the 63 expression values and the
  translation (tx, ty, tz);
* step lag: a yaw step of ``--step`` degrees added to the motion from the middle of the still stretch on (the real
  jitter stays; the stretch's last frame is held for 2 s after it): the frames until the smoothed yaw reaches 90% of
  the step (0 = the step frame itself);
* turn lag (``--turn A:B``, a stretch with one head turn): the frames between the raw and the smoothed yaw reaching
  90% of the turn, and how much of the turn the smoothed yaw reaches (fast shakes are attenuated).
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from orchestrator.keypoints import Motion, rotation_matrix
from orchestrator.smoothing import MotionSmoother, SmoothingOptions

EXAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "examples"
CHUNK = 8
# (template, still stretch, head-turn stretch or None): stretches chosen by looking at the yaw/pitch traces
DEFAULT_CASES = (("d7.pkl", (60, 100), None), ("wink.pkl", (0, 57), None), ("shake_face.pkl", (0, 34), (30, 52)))
SETTINGS = (SmoothingOptions(), SmoothingOptions(min_cutoff_hz=0.5), SmoothingOptions(min_cutoff_hz=2.0),
            SmoothingOptions(beta=1.0))


def head_angles(R: np.ndarray) -> np.ndarray:
    """(N, 3) pitch, yaw, roll in degrees from rotation matrices made by ``keypoints.rotation_matrix``
    (R = (Rz(roll) Ry(yaw) Rx(pitch))^T)."""
    R = np.asarray(R, np.float64)
    pitch = np.degrees(np.arctan2(R[:, 1, 2], R[:, 2, 2]))
    yaw = np.degrees(np.arctan2(-R[:, 0, 2], np.hypot(R[:, 1, 2], R[:, 2, 2])))
    roll = np.degrees(np.arctan2(R[:, 0, 1], R[:, 0, 0]))
    return np.stack([pitch, yaw, roll], axis=1)


def smooth(motion: Motion, fps: float, options: SmoothingOptions, chunk: int = CHUNK) -> Motion:
    """What AnimatePortrait does with ``options.smoothing``: one smoother, fed chunk by chunk."""
    smoother = MotionSmoother(fps, options)
    parts = [smoother(motion[i:i + chunk]) for i in range(0, len(motion), chunk)]
    return Motion(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("scale", "R", "exp", "t")))


def jitter(values: np.ndarray) -> float:
    return float(np.std(np.diff(np.asarray(values, np.float64).reshape(len(values), -1), axis=0)))


def groups(motion: Motion) -> dict[str, np.ndarray]:
    return {"angles": head_angles(motion.R), "exp": motion.exp, "t": motion.t}


def with_yaw_step(motion: Motion, at: int, degrees: float) -> Motion:
    """The motion with ``degrees`` added to the yaw from frame ``at`` on (pitch, roll and the jitter kept)."""
    angles = head_angles(motion.R)
    angles[at:, 1] += degrees
    R = rotation_matrix(angles[:, 0], angles[:, 1], angles[:, 2])
    return Motion(motion.scale, R, motion.exp, motion.t)


def frames_to(yaw: np.ndarray, start: int, base: float, target: float) -> int | None:
    """Frames from ``start`` until ``yaw`` first passes 90% of the way from ``base`` to ``target``."""
    level = base + 0.9 * (target - base)
    passed = (yaw[start:] >= level) if target >= base else (yaw[start:] <= level)
    return int(np.argmax(passed)) if passed.any() else None


@dataclass
class CaseResult:
    name: str
    fps: float
    still: tuple[int, int]
    settings: dict
    jitter_raw: dict
    jitter_smooth: dict
    step_lag_frames: int | None
    turn_raw_frame: int | None = None
    turn_lag_frames: int | None = None
    turn_reached: float | None = None


def study(motion: Motion, fps: float, still: tuple[int, int], options: SmoothingOptions, name: str = "",
          step: float = 20.0, turn: tuple[int, int] | None = None) -> CaseResult:
    a, b = still
    if not 0 <= a < b - 2 <= len(motion) - 2:
        raise ValueError(f"still stretch {a}:{b} does not fit {len(motion)} frames")
    smoothed = smooth(motion, fps, options)
    raw_g, smooth_g = groups(motion[a:b]), groups(smoothed[a:b])
    result = CaseResult(name, fps, still, {"min_cutoff_hz": options.min_cutoff_hz, "beta": options.beta},
                        {k: jitter(v) for k, v in raw_g.items()}, {k: jitter(v) for k, v in smooth_g.items()}, None)
    at = (a + b) // 2
    hold = np.r_[np.arange(b), np.full(int(2 * fps), b - 1)]  # the last frame held 2 s: room for the lag
    stepped = with_yaw_step(motion[hold], at, step)
    base = float(head_angles(motion.R[a:at])[:, 1].mean())
    result.step_lag_frames = frames_to(head_angles(smooth(stepped, fps, options).R)[:, 1], at, base, base + step)
    if turn is not None:
        t0, t1 = turn
        raw_yaw = head_angles(motion.R)[:, 1]
        smooth_yaw = head_angles(smoothed.R)[:, 1]
        base = float(raw_yaw[t0])
        extreme = int(t0 + np.argmax(np.abs(raw_yaw[t0:t1] - base)))
        target = float(raw_yaw[extreme])
        raw_at = frames_to(raw_yaw[:t1], t0, base, target)
        smooth_at = frames_to(smooth_yaw[:t1 + CHUNK], t0, base, target)
        result.turn_raw_frame = None if raw_at is None else t0 + raw_at
        result.turn_lag_frames = None if raw_at is None or smooth_at is None else smooth_at - raw_at
        reached = smooth_yaw[t0:t1 + CHUNK] - base
        result.turn_reached = float(np.max(np.abs(reached)) / abs(target - base))
    return result


def template_motion(path: Path) -> tuple[Motion, float]:
    from client.templates import read_template
    from orchestrator.templates import from_proto

    template = from_proto(read_template(path), 1_000_000)
    return template.motion, float(template.fps)


def video_motion(video: Path, server: str) -> tuple[Motion, float]:
    """ExtractMotion's template of a driving video (through a running service)."""
    from client.api import PortraitClient
    from orchestrator.templates import from_proto

    with PortraitClient(server) as client:
        template = from_proto(client.extract_motion(video), 1_000_000)
    return template.motion, float(template.fps)


def table(results: list[CaseResult]) -> str:
    lines = ["| motion | fps | still frames | min_cutoff_hz / beta | angle jitter (deg) raw -> smooth | exp jitter "
             "raw -> smooth | t jitter raw -> smooth | step lag (frames) | turn lag (frames), reached |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        cells = [f"{r.jitter_raw[k]:.3g} -> {r.jitter_smooth[k]:.3g} (x{r.jitter_smooth[k] / r.jitter_raw[k]:.2f})"
                 for k in ("angles", "exp", "t")]
        turn = "" if r.turn_reached is None else \
            f"{'never' if r.turn_lag_frames is None else r.turn_lag_frames}, {r.turn_reached:.0%}"
        lines.append(f"| {r.name} | {r.fps:g} | {r.still[0]}-{r.still[1]} | {r.settings['min_cutoff_hz']:g} / "
                     f"{r.settings['beta']:g} | " + " | ".join(cells) + f" | {r.step_lag_frames} "
                     f"({1000 * (r.step_lag_frames or 0) / r.fps:.0f} ms) | {turn} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--template", type=Path, default=None, help="a motion template (.pkl, .pb, .json)")
    p.add_argument("--video", type=Path, default=None, help="a driving video (needs --server: ExtractMotion)")
    p.add_argument("--server", default=None, help="orchestrator HOST:PORT for --video")
    p.add_argument("--still", default=None, help="A:B, the still-ish stretch [the whole clip]")
    p.add_argument("--turn", default=None, help="A:B, a stretch with one head turn [none]")
    p.add_argument("--step", type=float, default=20.0, help="yaw step in degrees for the lag [20]")
    p.add_argument("--json", type=Path, default=None, help="also write the results as JSON")
    args = p.parse_args(argv)

    def span(text):
        return tuple(int(v) for v in text.split(":")) if text else None

    if args.video is not None:
        if not args.server:
            p.error("--video needs --server (ExtractMotion of a running service)")
        motion, fps = video_motion(args.video, args.server)
        cases = [(args.video.name, motion, fps, span(args.still) or (0, len(motion)), span(args.turn))]
    elif args.template is not None:
        motion, fps = template_motion(args.template)
        cases = [(args.template.name, motion, fps, span(args.still) or (0, len(motion)), span(args.turn))]
    else:
        cases = [(name, *template_motion(EXAMPLES / "templates" / name), still, turn)
                 for name, still, turn in DEFAULT_CASES]
    results = [study(motion, fps, still, options, name, args.step, turn)
               for name, motion, fps, still, turn in cases for options in SETTINGS]
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps([vars(r) for r in results], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
