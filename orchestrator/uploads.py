"""Uploaded videos: the request stream's chunk messages spooled to a temporary file, with the size limits checked as
the bytes arrive. A source video's chunks come first, then the driving video's (``Requests`` gives back the message
where one upload ends and the next begins)."""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import AsyncIterator, Callable

from .errors import InvalidRequest

WHAT = {"driving_chunk": "driving video", "source_chunk": "source video"}


class Requests:
    """A request stream with one message of look-ahead: ``push`` a message back to be read again."""

    def __init__(self, messages: AsyncIterator):
        self._messages = aiter(messages)
        self._back = None

    def push(self, message) -> None:
        self._back = message

    def __aiter__(self) -> "Requests":
        return self

    async def __anext__(self):
        if self._back is not None:
            message, self._back = self._back, None
            return message
        return await anext(self._messages)


class SpoolFile:
    """A temporary file for one uploaded video, removed on exit."""

    def __init__(self, directory: Path | None):
        self.directory = directory

    def __enter__(self) -> Path:
        handle = tempfile.NamedTemporaryFile(prefix="upload-", suffix=".bin", dir=self.directory, delete=False)
        handle.close()
        self.path = Path(handle.name)
        return self.path

    def __exit__(self, *exc) -> None:
        self.path.unlink(missing_ok=True)


async def receive_video(requests: Requests, path: Path, announced: int, limit: int, part: str = "driving_chunk",
                        counted: Callable[[int], None] = lambda n: None, what: str | None = None) -> int:
    """Spool the ``part`` messages (``driving_chunk`` or ``source_chunk``) to ``path``; returns the size. A source
    upload ends at the first ``driving_chunk`` (pushed back for the driving upload). ``what`` names the upload in
    errors (default: the driving or source video; "driving audio" for a voice)."""
    what = what or WHAT[part]
    if announced > limit:
        raise InvalidRequest(f"the {what} is {announced} bytes, more than the limit of {limit} bytes")
    size = 0
    with open(path, "wb") as spool:
        async for message in requests:
            kind = message.WhichOneof("part")
            if kind != part:
                if part == "source_chunk" and kind == "driving_chunk":
                    requests.push(message)
                    break
                raise InvalidRequest("after the setup only driving_chunk messages may follow" if part == "driving_chunk"
                                     else "after the setup the source video's bytes follow as source_chunk messages, "
                                          "then (with a driving video) its bytes as driving_chunk messages")
            data = getattr(message, part)
            size += len(data)
            counted(len(data))
            if size > limit:
                raise InvalidRequest(f"the {what} exceeds the limit of {limit} bytes")
            spool.write(data)
    if size == 0:
        raise InvalidRequest(f"the {what} is empty: send its bytes as {part} messages after setup")
    if announced and size != announced:
        raise InvalidRequest(f"the {what} was announced as {announced} bytes (setup size_bytes) but {size} bytes "
                             "arrived; the upload is incomplete or size_bytes is wrong")
    return size
