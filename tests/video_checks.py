"""Test videos: short clips cut from the shared examples, and what a player makes of an MP4 (frames, rate, audio)."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def playable_frames(data: bytes, path: Path) -> int:
    """How many frames a player can show from ``data`` (written to ``path``); 0 when it cannot start yet."""
    if not data:
        return 0
    path.write_bytes(data)
    try:
        with av.open(str(path)) as container:
            return sum(1 for _ in container.decode(video=0))
    except av.error.FFmpegError:
        return 0


def clip(source: Path, destination: Path, frames: int, size: tuple[int, int] | None = None,
         fps: Fraction | None = None, audio: bool = True) -> Path:
    """The first ``frames`` frames of a video (optionally cropped to ``size`` = (w, h) from the centre, or at another
    frame rate), with the source's audio of the same duration."""
    with av.open(str(source)) as inp, av.open(str(destination), "w") as out:
        vin = inp.streams.video[0]
        rate = fps or vin.average_rate
        w, h = size or (vin.codec_context.width, vin.codec_context.height)
        vout = out.add_stream("libx264", rate=rate)
        vout.width, vout.height, vout.pix_fmt = w, h, "yuv420p"
        ain = inp.streams.audio[0] if audio and inp.streams.audio else None
        aout = out.add_stream("aac", rate=ain.codec_context.sample_rate) if ain else None
        for i, frame in enumerate(inp.decode(vin)):
            if i == frames:
                break
            image = frame.to_ndarray(format="rgb24")
            y0, x0 = (image.shape[0] - h) // 2, (image.shape[1] - w) // 2
            out.mux(vout.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(image[y0:y0 + h, x0:x0 + w]),
                                                           format="rgb24")))
        out.mux(vout.encode(None))
        if ain:
            seconds = frames / rate
            inp.seek(0)
            for frame in inp.decode(ain):
                if frame.time is not None and frame.time >= seconds:
                    break
                frame.pts = None
                out.mux(aout.encode(frame))
            out.mux(aout.encode(None))
    return destination


def inspect(path: Path) -> dict:
    with av.open(str(path)) as c:
        video = c.streams.video[0]
        info = {"rate": video.average_rate, "codec": video.codec_context.name, "pix_fmt": video.codec_context.pix_fmt,
                "audio": bool(c.streams.audio)}
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video)]
    info.update(frames=len(frames), size=(frames[0].shape[1], frames[0].shape[0]) if frames else None)
    return info


def top_level_boxes(data: bytes) -> list[str]:
    """The MP4's top-level box types in order (ftyp, moov, moof, mdat, ...)."""
    boxes, at = [], 0
    while at + 8 <= len(data):
        size, kind = int.from_bytes(data[at:at + 4], "big"), data[at + 4:at + 8].decode("latin-1")
        if size == 1:  # 64-bit size
            size = int.from_bytes(data[at + 8:at + 16], "big")
        if size < 8:
            raise ValueError(f"bad MP4 box {kind!r} of {size} bytes at {at}")
        boxes.append(kind)
        at += size
    return boxes
