"""read_ahead: the producer runs ahead of the consumer by at most `depth` items, errors reach the consumer, and
closing the consumer cancels the producer."""
from __future__ import annotations

import asyncio

import pytest

from orchestrator.read_ahead import read_ahead


def test_items_arrive_in_order_and_the_producer_runs_at_most_depth_ahead():
    produced: list[int] = []

    async def numbers():
        for i in range(6):
            produced.append(i)
            yield i

    async def consume():
        seen = []
        async for i in read_ahead(numbers(), depth=1):
            await asyncio.sleep(0.01)  # let the producer run as far as it can
            # i is being consumed, one more may wait in the queue, one more may be held by the producer
            assert len(produced) <= i + 3
            seen.append(i)
        return seen

    assert asyncio.run(consume()) == list(range(6))


def test_the_next_item_is_produced_while_the_consumer_works_on_this_one():
    async def consume():
        next_started = asyncio.Event()

        async def items():
            yield 0
            next_started.set()  # rendering chunk 1 ...
            yield 1

        async for i in read_ahead(items()):
            if i == 0:  # ... while chunk 0 is still being encoded
                await asyncio.wait_for(next_started.wait(), timeout=5)
        return True

    assert asyncio.run(consume())


def test_a_producer_error_is_raised_to_the_consumer():
    async def failing():
        yield 1
        raise ValueError("Triton said no")

    async def consume():
        seen = []
        async for i in read_ahead(failing()):
            seen.append(i)
        return seen

    with pytest.raises(ValueError, match="Triton said no"):
        asyncio.run(consume())


def test_closing_the_consumer_cancels_the_producer():
    state = {"cancelled": False, "closed": False}

    async def endless():
        try:
            i = 0
            while True:
                await asyncio.sleep(0.01)  # an in-flight call
                yield i
                i += 1
        except asyncio.CancelledError:
            state["cancelled"] = True
            raise
        finally:
            state["closed"] = True

    async def consume():
        stream = read_ahead(endless())
        async for i in stream:
            if i == 2:
                break
        await stream.aclose()

    asyncio.run(consume())
    assert state["closed"]
