"""What the CLI prints while an animation runs and when it ends: a progress bar and the summary."""
from __future__ import annotations

import sys
import time
from pathlib import Path

from protos.liveportrait.v1 import portrait_animator_pb2 as pb

from .faces import faces_line

STAGE_NAMES = {v.number: v.name.lower() for v in pb.Stage.DESCRIPTOR.values}


class ProgressBar:
    """One updating line on stderr."""

    def __init__(self, stream=sys.stderr, width: int = 30):
        self.stream = stream
        self.width = width
        self.started = time.monotonic()

    def __call__(self, progress: pb.Progress) -> None:
        stage = STAGE_NAMES.get(progress.stage, "?")
        elapsed = time.monotonic() - self.started
        if progress.frames_total:
            filled = int(self.width * progress.frames_done / progress.frames_total)
            bar = "#" * filled + "-" * (self.width - filled)
            line = f"[{bar}] {progress.frames_done}/{progress.frames_total} frames  {stage:<10} {elapsed:6.1f} s"
        else:
            line = f"{stage:<10} {progress.message}  {elapsed:6.1f} s"
        self.stream.write("\r" + line[:120].ljust(100))
        self.stream.flush()

    def done(self) -> None:
        self.stream.write("\n")


def print_summary(summary: pb.Summary, output: Path) -> None:
    fps = summary.fps.num / max(summary.fps.den, 1)
    print(f"wrote {output}: {summary.frames} frames, {summary.width}x{summary.height}, {fps:.3f} fps "
          f"({summary.fps.num}/{summary.fps.den}), audio {'yes' if summary.has_audio else 'no'}, "
          f"{summary.video_bytes / 1e6:.2f} MB in {summary.seconds:.1f} s")
    print("stages: " + ", ".join(f"{t.stage} {t.seconds:.2f} s" for t in summary.timings))
    if summary.faces:
        print(faces_line(summary))
    if summary.source_frames:
        print(f"source video: {summary.source_frames} frames decoded, {summary.frames} animated")
    if summary.frames:
        print(f"Triton traffic: {(summary.triton_bytes_sent + summary.triton_bytes_received) / summary.frames / 1e6:.3f}"
              f" MB per frame")
    for warning in summary.warnings:
        print(f"WARNING: {warning}")
