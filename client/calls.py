"""Streaming calls of the asyncio client that report the status the server ended them with.

When the server ends a call while this client is still sending (a refused key or setup, a spent quota), grpc.aio
can report its own failed send instead of the server's status: ``INTERNAL: Internal error from Core``
(grpc/grpc#36066); and a call fed from a request iterator is cancelled outright. So here requests are written by a
task of their own that stops quietly once the call has ended, and the status the call first ended with is kept
(``EndStatus``) and reported in place of the failed send."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

import grpc

SEND_FAILED = "Internal error from Core"  # grpc.aio's details when a send fails because the call has ended
STATUS_WAIT_S = 1.0  # how long a failed send waits for the server's status to come in


def _value(coroutine):
    """The result of a finished call's status coroutine (``code()``, ``details()`` ...): it returns at once."""
    try:
        coroutine.send(None)
    except StopIteration as stop:
        return stop.value
    coroutine.close()
    raise RuntimeError("the call has not ended")


def _send_failed(exc: grpc.aio.AioRpcError) -> bool:
    return exc.code() == grpc.StatusCode.INTERNAL and exc.details() == SEND_FAILED


class EndStatus:
    """Keeps the first status ``call`` ends with; ``error(exc)`` is the server's refusal in place of a failed send."""

    def __init__(self, call):
        self.call = call
        self.first: grpc.aio.AioRpcError | None = None
        call.add_done_callback(self._ended)

    def _ended(self, call) -> None:
        if self.first is None:
            self.first = grpc.aio.AioRpcError(_value(call.code()), _value(call.initial_metadata()),
                                              _value(call.trailing_metadata()), _value(call.details()),
                                              _value(call.debug_error_string()))

    async def error(self, exc: grpc.aio.AioRpcError) -> grpc.aio.AioRpcError:
        if not _send_failed(exc):
            return exc
        if self.first is not None and not _send_failed(self.first) and self.first.code() != grpc.StatusCode.OK:
            return self.first  # the server's status came first; the failed send overwrote it
        deadline = asyncio.get_running_loop().time() + STATUS_WAIT_S
        while asyncio.get_running_loop().time() < deadline:  # the failed send came first: the status follows
            await asyncio.sleep(0.01)
            if await self.call.details() != SEND_FAILED:
                return grpc.aio.AioRpcError(await self.call.code(), await self.call.initial_metadata(),
                                            await self.call.trailing_metadata(), await self.call.details(),
                                            await self.call.debug_error_string())
        return exc


async def send_all(call, requests: Iterable, half_close: bool = True) -> None:
    """Write ``requests`` then half-close; once the call has ended, stop (the responses side reports how). When
    ``requests`` itself fails (a file that cannot be read), the call is cancelled and the error is this task's."""
    try:
        for request in requests:
            await call.write(request)
        if half_close:
            await call.done_writing()
    except (grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError):
        pass
    except BaseException:
        call.cancel()
        raise


def _requests_error(sender: asyncio.Task) -> BaseException | None:
    return sender.exception() if sender.done() and not sender.cancelled() else None


@asynccontextmanager
async def _streaming(method, requests: Iterable, timeout: float | None):
    """A call of ``method`` (a stub attribute) with ``requests`` sent by a task of their own; the call's errors
    raised as the server's status (or as the requests' own error)."""
    call = method(timeout=timeout)
    status = EndStatus(call)
    sender = asyncio.create_task(send_all(call, requests))
    try:
        yield call
    except grpc.aio.AioRpcError as exc:
        raise await status.error(exc) from None
    except asyncio.CancelledError:
        raise _requests_error(sender) or asyncio.CancelledError() from None
    finally:
        if not call.done():
            call.cancel()
        sender.cancel()


async def stream_stream(method, requests: Iterable, timeout: float | None = None) -> AsyncIterator:
    """The responses of a stream-stream ``method`` (a stub attribute) fed with ``requests``."""
    async with _streaming(method, requests, timeout) as call:
        while (response := await call.read()) is not grpc.aio.EOF:
            yield response


async def stream_unary(method, requests: Iterable, timeout: float | None = None):
    """The response of a stream-unary ``method`` (a stub attribute) fed with ``requests``."""
    async with _streaming(method, requests, timeout) as call:
        return await call
