"""Run an async iterator ahead of its consumer: the render of chunk k+1 overlaps the paste-back and encoding of
chunk k, with at most ``depth`` chunks waiting in between (memory stays bounded)."""
from __future__ import annotations

import asyncio
from contextlib import aclosing, suppress
from typing import AsyncIterator, TypeVar

T = TypeVar("T")
_END = object()


class _Failure:
    def __init__(self, error: Exception):
        self.error = error


async def read_ahead(items: AsyncIterator[T], depth: int = 1) -> AsyncIterator[T]:
    """Yield what ``items`` yields, producing up to ``depth`` items ahead in a task. The producer's exception is
    raised here; closing or cancelling this generator cancels the producer (and any call it has in flight)."""
    queue: asyncio.Queue = asyncio.Queue(maxsize=depth)

    async def produce() -> None:
        try:
            async with aclosing(items) as source:
                async for item in source:
                    await queue.put(item)
        except Exception as error:  # noqa: BLE001 - handed to the consumer, which raises it
            await queue.put(_Failure(error))
            return
        await queue.put(_END)

    producer = asyncio.create_task(produce())
    try:
        while (item := await queue.get()) is not _END:
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        producer.cancel()
        with suppress(asyncio.CancelledError):
            await producer
