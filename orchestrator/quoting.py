"""Request values quoted in status messages, cut to a bounded length.

A gRPC status message travels in a response header; one past the peer's metadata limit (16 KB by default) turns the
status into a transport error (``RESOURCE_EXHAUSTED "received metadata size exceeds hard limit"``). So a message
never grows with the request: a quoted string is cut to ``QUOTE_LIMIT`` characters, an array is summarised by the
count and first index of its bad values, and the final message is cut to ``MESSAGE_LIMIT`` as a last guard.
"""
from __future__ import annotations

import numpy as np

QUOTE_LIMIT = 80  # characters of a quoted request value
MESSAGE_LIMIT = 1000  # characters of a whole status message


def quote(value: object, limit: int = QUOTE_LIMIT) -> str:
    """``repr`` of the value's text, cut to ``limit`` characters: ``'abc'`` or ``'abc...'... (70000 characters)``."""
    text = value if isinstance(value, str) else str(value)
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"


def bad_values(bad: np.ndarray) -> str:
    """A boolean mask of an array's bad values summarised without the values: ``63 of 63 values, first at index 0``
    (the index in the flattened array)."""
    bad = np.asarray(bad, bool).reshape(-1)
    count = int(bad.sum())
    first = int(np.argmax(bad)) if count else -1
    return f"{count} of {bad.size} values, first at index {first}"


def bounded(message: str, limit: int = MESSAGE_LIMIT) -> str:
    """A whole status message cut to ``limit`` characters (every quoted value is already bounded; this is the guard
    for what a future message might forget)."""
    if len(message) <= limit:
        return message
    return f"{message[:limit]}... ({len(message)} characters)"
