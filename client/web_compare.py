"""The page's "result beside the driving video" view (the official app's "result vs driving"): the driving video and
the animation side by side, frame by frame, at one height, written as an MP4 the browser plays. Made in the page's
process from the two files it already has; the service is not called again."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

HEIGHT = 512  # both videos are scaled to this height (even widths)


def _scaled(frame: np.ndarray, height: int) -> np.ndarray:
    h, w = frame.shape[:2]
    width = max(2, int(round(w * height / h / 2)) * 2)
    return cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA if h > height else cv2.INTER_LINEAR)


def side_by_side(driving: Path, result: Path, output: Path, height: int = HEIGHT) -> Path:
    """``driving`` | ``result`` frame by frame (as many frames as the shorter has) at ``height``, at the result's
    frame rate, H.264 in MP4 (no sound). Raises ``ValueError`` when either file has no video frames."""
    out = stream = None
    try:
        with av.open(str(driving)) as left, av.open(str(result)) as right:
            if not left.streams.video or not right.streams.video:
                raise ValueError("the comparison needs a driving video and a video result")
            rate = right.streams.video[0].average_rate or Fraction(25)
            for a, b in zip(left.decode(video=0), right.decode(video=0)):
                pair = np.concatenate([_scaled(a.to_ndarray(format="rgb24"), height),
                                       _scaled(b.to_ndarray(format="rgb24"), height)], axis=1)
                if out is None:
                    out = av.open(str(output), "w", options={"movflags": "faststart"})
                    stream = out.add_stream("libx264", rate=rate)
                    stream.width, stream.height, stream.pix_fmt = pair.shape[1], pair.shape[0], "yuv420p"
                    stream.options = {"preset": "ultrafast", "crf": "23"}
                out.mux(stream.encode(av.VideoFrame.from_ndarray(pair, format="rgb24")))
        if out is None:
            raise ValueError("the driving video or the result has no frames to compare")
        out.mux(stream.encode(None))
        out.close()
        out = None
        return output
    finally:
        if out is not None:  # failed midway: nothing half-written is left
            try:
                out.close()
            except (av.FFmpegError, ValueError):
                pass
            output.unlink(missing_ok=True)
