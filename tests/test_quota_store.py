"""The quota stores (orchestrator/quota_store.py): this process's own and Redis's Lua scripts, run against a real
redis-server, keep the same frame windows and concurrency slots; Redis's are shared by replicas, expire, survive a
killed replica for at most a lease, and a Redis that does not answer fails closed (UNAVAILABLE) or open as chosen."""
from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest

from orchestrator.keys import KeyPolicy
from orchestrator.quota_store import LocalQuotaStore, QuotaStoreUnavailable, RedisQuotaStore
from orchestrator.quotas import QuotaExceeded, Quotas
from orchestrator.triton_process import free_port

PER_MINUTE = 60.0  # one frame per second


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, 30))  # a hang fails the test instead of stalling the suite


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Local:
    """The in-process store, with a clock the test moves."""

    def __init__(self):
        self.clock = Clock()

    def store(self) -> LocalQuotaStore:
        return LocalQuotaStore(self.clock)

    async def pass_time(self, store, name: str, seconds: float) -> None:
        self.clock.now += seconds


class Redis:
    """Stores on the real redis-server under a prefix of their own; time passes by moving the window's charges back
    (Redis's clock is the script's clock)."""

    def __init__(self, server):
        self.url = server.url
        self.prefix = f"test:{uuid.uuid4().hex}:"

    def store(self, **options) -> RedisQuotaStore:
        return RedisQuotaStore(self.url, prefix=self.prefix, **options)

    async def pass_time(self, store, name: str, seconds: float) -> None:
        assert seconds == int(seconds)
        key = f"{self.prefix}frames:{name}"
        charges = await store.client.hgetall(key)
        if charges:
            await store.client.delete(key)
            await store.client.hset(key, mapping={int(second) - int(seconds): frames
                                                  for second, frames in charges.items()})


@pytest.fixture(params=["local", "redis"])
def backend(request):
    if request.param == "local":
        return Local()
    return Redis(request.getfixturevalue("redis_server"))


def test_a_minute_holds_its_frames_may_be_overdrawn_and_frees_as_charges_leave_it(backend):
    async def main():
        store = backend.store()
        assert await store.frames("k", PER_MINUTE) == (60, 0)  # a key that rendered nothing has its minute
        left, wait = await store.frames("k", PER_MINUTE, charge=90)  # a running request overdraws
        assert left == pytest.approx(-30) and 60 < wait <= 61  # every frame back once the charge leaves the window
        await backend.pass_time(store, "k", 59)
        assert (await store.frames("k", PER_MINUTE))[0] == pytest.approx(-30)  # nothing comes back within the minute
        await backend.pass_time(store, "k", 2)
        assert await store.frames("k", PER_MINUTE) == (60, 0)
        await store.close()

    run(main())


def test_any_minute_holds_at_most_the_keys_frames_plus_one_requests_overdraw(backend):
    """Requests of 5 frames, admitted whenever a frame is left, every second for three minutes: no 60 s window holds
    more than frames_per_minute + 4 (one request admitted with one frame left), however the charges fall."""
    async def main():
        store = backend.store()
        charged = []  # (second, frames)
        for second in range(180):
            left, _ = await store.frames("k", PER_MINUTE)
            if left >= 1:
                await store.frames("k", PER_MINUTE, charge=5)
                charged.append((second, 5))
            await backend.pass_time(store, "k", 1)
        busiest = max(sum(n for s, n in charged if start <= s < start + 60) for start in range(180))
        assert PER_MINUTE <= busiest <= PER_MINUTE + 4
        assert sum(n for _, n in charged) <= 3 * PER_MINUTE + 4  # the long-run rate is the key's
        await store.close()

    run(main())


def test_quotas_refuse_a_spent_minute_with_the_wait_until_one_frame_is_back(backend):
    async def main():
        quotas = Quotas(backend.store())
        policy = KeyPolicy("metered", "0" * 64, frames_per_minute=PER_MINUTE)
        await quotas.charge(policy, 70)
        with pytest.raises(QuotaExceeded) as refused:
            await quotas.admit(policy)
        assert 60 < refused.value.retry_after_s <= 61  # the 70 frames leave the window together
        assert await quotas.admit(policy, renders=False) is None  # a call that renders nothing is admitted
        await quotas.store.close()

    run(main())


def test_concurrency_slots_are_leased_up_to_the_limit_and_released(backend):
    async def main():
        store = backend.store()
        first, running = await store.acquire("k", 2)
        second, running = await store.acquire("k", 2)
        assert first and second and first != second and running == 2
        assert await store.acquire("k", 2) == (None, 2)
        await store.release("k", first)
        third, running = await store.acquire("k", 2)
        assert third and running == 2
        await store.close()

    run(main())


def test_two_replicas_share_one_minute_and_one_set_of_slots(redis_server):
    backend = Redis(redis_server)

    async def main():
        a, b = backend.store(), backend.store()
        await a.frames("k", PER_MINUTE, charge=60)
        assert (await b.frames("k", PER_MINUTE))[0] < 1  # what one replica used, the other sees
        lease, _ = await a.acquire("k", 1)
        assert lease and await b.acquire("k", 1) == (None, 1)
        await a.release("k", lease)
        assert (await b.acquire("k", 1))[0]
        await a.close()
        await b.close()

    run(main())


def test_redis_keys_expire_once_they_hold_nothing(redis_server):
    backend = Redis(redis_server)

    async def main():
        store = backend.store()
        await store.frames("spent", PER_MINUTE, charge=60)  # kept until the charge leaves the window
        assert 60_000 <= await store.client.pttl(f"{backend.prefix}frames:spent") <= 61_100
        await store.frames("idle", PER_MINUTE)  # looking writes nothing
        assert not await store.client.exists(f"{backend.prefix}frames:idle")
        await store.close()

    run(main())


def test_a_killed_replicas_slot_is_freed_when_its_lease_ends_and_a_living_one_keeps_its_own(redis_server):
    backend = Redis(redis_server)

    async def main():
        killed, living, other = (backend.store(lease_s=0.6) for _ in range(3))
        assert (await killed.acquire("dead", 1))[0]
        killed._renewer.cancel()  # the replica is gone: nobody renews or releases its lease
        assert (await living.acquire("alive", 1))[0]
        assert await other.acquire("dead", 1) == (None, 1)
        await asyncio.sleep(1.0)  # past the lease; the living replica renewed its own every 0.2 s
        assert (await other.acquire("dead", 1))[0]
        assert await other.acquire("alive", 1) == (None, 1)
        for store in (killed, living, other):
            await store.close()

    run(main())


def test_a_redis_that_does_not_answer_fails_closed_by_default_and_open_when_chosen(caplog):
    port = free_port()  # nothing listens there
    url = f"redis://:not-for-logs@127.0.0.1:{port}/0"

    async def main():
        closed = RedisQuotaStore(url)
        with pytest.raises(QuotaStoreUnavailable) as refused:
            await closed.frames("k", PER_MINUTE)
        assert refused.value.code == grpc.StatusCode.UNAVAILABLE
        assert "quota store (Redis) is unavailable" in str(refused.value) and str(port) not in str(refused.value)
        assert f"Redis at redis://127.0.0.1:{port}/0) is unavailable" in caplog.text  # where, for the operator
        assert "not-for-logs" not in caplog.text
        with pytest.raises(QuotaStoreUnavailable):
            await closed.acquire("k", 1)
        opened = RedisQuotaStore(url, fail="open")
        assert await opened.frames("k", PER_MINUTE, charge=5) == (float("inf"), 0)  # served, uncounted
        lease, _ = await opened.acquire("k", 1)
        assert lease is not None
        await opened.release("k", lease)
        await closed.close()
        await opened.close()

    run(main())
