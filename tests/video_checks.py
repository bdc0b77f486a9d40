"""What a player can make of the MP4 bytes a client has received so far."""
from __future__ import annotations

from pathlib import Path

import av


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
