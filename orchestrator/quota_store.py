"""Where the per-key quota state lives: in this process (the default, one replica) or in Redis (shared by every
orchestrator replica, so a key's quota does not grow with the replica count).

Two kinds of state per key name:

* a **frame window**: the frames rendered in the last minute, kept per second of charge; a key has
  ``per_minute`` minus those left. A charge stays counted ``WINDOW_S`` (61) seconds after the second it was made in,
  so any 60 s hold at most ``per_minute`` frames plus what running requests overdrew (a charge may take the frames
  left below zero: the request that overdraws finishes, the next ones wait until enough charges leave the window);
* **concurrency slots**: leases on the key's ``limit`` requests running at once. In Redis a lease expires
  ``LEASE_S`` after it was last renewed (every replica renews its own leases every ``LEASE_S / 3``), so a replica that
  was killed frees its slots within ``LEASE_S``.

In Redis both are updated by Lua scripts (atomic, with Redis's own clock, so replicas' clocks do not matter) and
expire when they no longer hold anything (a window when its last charge has left it). A Redis that does not answer within
``TIMEOUT_S`` is an outage: with ``fail="closed"`` (the default) the call gets ``UNAVAILABLE`` naming the quota
store; with ``fail="open"`` it is served and its frames go uncounted. The log says where Redis is and why it failed
(at most every ``LOG_EVERY_S``); the caller is not told where it is.
"""
from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Protocol

import grpc

from .errors import ServiceError

log = logging.getLogger("liveportrait.orchestrator.quota")
FAIL_MODES = ("closed", "open")
LEASE_S = 30.0
TIMEOUT_S = 0.5  # connect and read timeout of one Redis call: an outage is answered at once, never a hang
LOG_EVERY_S = 10.0
PREFIX = "liveportrait:quota:"

WINDOW_S = 61  # a charge made in second s counts until s + 61: at least a full minute, whatever its fraction

# KEYS[1]: the window (hash: second -> frames charged in it). ARGV[1]: frames per minute, ARGV[2]: frames to take,
# ARGV[3]: WINDOW_S. Returns {frames left after the charge, seconds until one frame is left (0: now)} as strings (Lua
# numbers would be truncated to integers).
WINDOW_LUA = """
local limit, charge, window = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local second = tonumber(clock[1])
if charge > 0 then
  redis.call('HINCRBYFLOAT', KEYS[1], tostring(second), charge)
end
local fields = redis.call('HGETALL', KEYS[1])
local charges, used, last = {}, 0, nil
for i = 1, #fields, 2 do
  local s, n = tonumber(fields[i]), tonumber(fields[i + 1])
  if s + window <= now then
    redis.call('HDEL', KEYS[1], fields[i])
  else
    used = used + n
    table.insert(charges, {s, n})
    if last == nil or s > last then last = s end
  end
end
local wait = 0
if limit - used < 1 then
  table.sort(charges, function(a, b) return a[1] < b[1] end)
  local still = used
  for _, c in ipairs(charges) do
    still = still - c[2]
    if limit - still >= 1 then wait = c[1] + window - now; break end
  end
end
if last ~= nil then
  redis.call('PEXPIREAT', KEYS[1], math.ceil((last + window) * 1000))
end
return {string.format('%.6f', limit - used), string.format('%.6f', wait)}
"""


def window_state(charges: dict[int, float], limit: float, now: float) -> tuple[float, float]:
    """The frames left of ``limit`` and the seconds until one frame is left, for ``charges`` (second -> frames) whose
    expired entries were dropped: what ``WINDOW_LUA`` computes, for the local store."""
    used = sum(charges.values())
    if limit - used >= 1:
        return limit - used, 0.0
    still = used
    for second in sorted(charges):
        still -= charges[second]
        if limit - still >= 1:
            return limit - used, second + WINDOW_S - now
    return limit - used, 0.0  # only reached for a limit below one frame

# KEYS[1]: the key's leases (sorted set: lease -> expiry in ms). ARGV[1]: the limit, ARGV[2]: a new lease,
# ARGV[3]: the lease time in ms. Returns {1 if leased else 0, leases now held}.
ACQUIRE_LUA = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local running = redis.call('ZCARD', KEYS[1])
if running >= tonumber(ARGV[1]) then
  return {0, running}
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[2])
redis.call('PEXPIRE', KEYS[1], 2 * tonumber(ARGV[3]))
return {1, running + 1}
"""

# KEYS: lease sets, ARGV[1]: the lease time in ms, ARGV[2...]: a lease in each set (same order). Extends the leases
# that still exist.
RENEW_LUA = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, 'XX', now + tonumber(ARGV[1]), ARGV[i + 1])
  redis.call('PEXPIRE', key, 2 * tonumber(ARGV[1]))
end
return #KEYS
"""


class QuotaStoreUnavailable(ServiceError):
    """The shared quota store (Redis) did not answer and the store fails closed."""

    code = grpc.StatusCode.UNAVAILABLE


class QuotaStore(Protocol):
    async def frames(self, name: str, per_minute: float, charge: float = 0.0) -> tuple[float, float]:
        """The key's frames left of ``per_minute`` in the last minute after taking ``charge`` (0: only look), and the
        seconds until one frame is left (0 when one is)."""

    async def acquire(self, name: str, limit: int) -> tuple[str | None, int]:
        """A lease on one of the key's ``limit`` slots (None when all are held), and the slots held."""

    async def release(self, name: str, lease: str) -> None: ...

    async def close(self) -> None: ...


class LocalQuotaStore:
    """The quota state of this process alone."""

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self._windows: dict[str, dict[int, float]] = {}  # name -> {second: frames charged in it}
        self._leases: dict[str, set[str]] = {}

    async def frames(self, name: str, per_minute: float, charge: float = 0.0) -> tuple[float, float]:
        now = self.clock()
        charges = {second: frames for second, frames in self._windows.get(name, {}).items()
                   if second + WINDOW_S > now}
        if charge:
            charges[int(now)] = charges.get(int(now), 0.0) + charge
        if charges:
            self._windows[name] = charges
        else:
            self._windows.pop(name, None)
        return window_state(charges, per_minute, now)

    async def acquire(self, name: str, limit: int) -> tuple[str | None, int]:
        leases = self._leases.setdefault(name, set())
        if len(leases) >= limit:
            return None, len(leases)
        lease = uuid.uuid4().hex
        leases.add(lease)
        return lease, len(leases)

    async def release(self, name: str, lease: str) -> None:
        self._leases.get(name, set()).discard(lease)

    def running(self, name: str) -> int:
        return len(self._leases.get(name, ()))

    async def close(self) -> None:
        pass


class RedisQuotaStore:
    """The quota state in Redis, shared by the replicas that use the same ``url`` (``redis://[:password@]host:port/db``,
    ``rediss://`` for TLS)."""

    def __init__(self, url: str, password: str | None = None, fail: str = "closed", lease_s: float = LEASE_S,
                 timeout_s: float = TIMEOUT_S, prefix: str = PREFIX):
        import redis.asyncio
        from redis.asyncio.retry import Retry
        from redis.exceptions import RedisError
        from redis.backoff import NoBackoff

        if fail not in FAIL_MODES:
            raise ValueError(f"the quota store's failure mode must be one of {', '.join(FAIL_MODES)}, got {fail!r}")
        self.fail = fail
        self._errors = (RedisError, OSError)  # connection refused or lost, timeouts, errors Redis answers
        self.lease_ms = int(lease_s * 1000)
        self.prefix = prefix
        # one retry at once: a pooled connection broken by a Redis restart reconnects instead of failing a call
        self.client = redis.asyncio.Redis.from_url(url, password=password, socket_timeout=timeout_s,
                                                   socket_connect_timeout=timeout_s, retry=Retry(NoBackoff(), 1))
        self.where = _without_password(url)
        self._window = self.client.register_script(WINDOW_LUA)
        self._acquire = self.client.register_script(ACQUIRE_LUA)
        self._renew = self.client.register_script(RENEW_LUA)
        self._leases: dict[str, str] = {}  # lease -> key name, renewed while held
        self._renewer: asyncio.Task | None = None
        self._logged = float("-inf")
        log.info("API key quotas are kept in Redis at %s (when it does not answer: fail %s)", self.where, fail)

    async def frames(self, name: str, per_minute: float, charge: float = 0.0) -> tuple[float, float]:
        try:
            left, wait = await self._window(keys=[f"{self.prefix}frames:{name}"],
                                            args=[repr(per_minute), repr(float(charge)), WINDOW_S])
        except self._errors as exc:
            self._outage(exc, f"the frames of the key {name!r}")
            return float("inf"), 0.0  # failing open: the call is served, its frames uncounted
        return float(left), float(wait)

    async def acquire(self, name: str, limit: int) -> tuple[str | None, int]:
        lease = uuid.uuid4().hex
        try:
            leased, running = await self._acquire(keys=[self._slots(name)], args=[limit, lease, self.lease_ms])
        except self._errors as exc:
            self._outage(exc, f"the requests running for the key {name!r}")
            return "", 0  # failing open: admitted without a lease
        if not leased:
            return None, int(running)
        self._leases[lease] = name
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.create_task(self._renew_leases())
        return lease, int(running)

    async def release(self, name: str, lease: str) -> None:
        if self._leases.pop(lease, None) is None:
            return
        try:
            await self.client.zrem(self._slots(name), lease)
        except self._errors as exc:  # the lease expires on its own
            self._log(f"a concurrency slot of the key {name!r} could not be released (it expires within "
                      f"{self.lease_ms / 1000:g} s): {_reason(exc)}")

    async def running(self, name: str) -> int:
        return int(await self.client.zcount(self._slots(name), f"({await self._now_ms()}", "+inf"))

    async def close(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
        await self.client.aclose()

    def _slots(self, name: str) -> str:
        return f"{self.prefix}running:{name}"

    async def _now_ms(self) -> int:
        seconds, micros = await self.client.time()
        return seconds * 1000 + micros // 1000

    async def _renew_leases(self) -> None:
        while self._leases:
            await asyncio.sleep(self.lease_ms / 3000)
            held = list(self._leases.items())
            if not held:
                break
            try:
                await self._renew(keys=[self._slots(name) for _, name in held],
                                  args=[self.lease_ms, *(lease for lease, _ in held)])
            except self._errors as exc:
                self._log(f"concurrency slots not renewed (they expire within {self.lease_ms / 1000:g} s unless "
                          f"Redis answers again): {_reason(exc)}")

    def _outage(self, exc: Exception, what: str) -> None:
        """The log names Redis and why; the caller is told what it needs (not where Redis is)."""
        message = f"the shared quota store (Redis at {self.where}) is unavailable ({_reason(exc)})"
        if self.fail == "closed":
            self._log(f"{message}: the calls that need a key's quota are refused")
            raise QuotaStoreUnavailable("the shared quota store (Redis) is unavailable: calls that need the key's "
                                        "quota are refused until it answers; retry later") from None
        self._log(f"{message}: serving without counting {what} (--quota-redis-fail open)")

    def _log(self, message: str) -> None:
        now = time.monotonic()
        if now - self._logged >= LOG_EVERY_S:
            self._logged = now
            log.warning("%s", message)


def _reason(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:160].rstrip(".")


def _without_password(url: str) -> str:
    """The URL as it may be shown: no user, password or query (``unix://`` URLs may carry the password there)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "(a URL without a scheme)"
    return f"{scheme}://{rest.split('?')[0].rpartition('@')[2]}"[:120]


def make_store(redis_url: str | None, password: str | None = None, fail: str = "closed") -> QuotaStore:
    """Redis when a URL is given, else this process's own store."""
    if not redis_url:
        return LocalQuotaStore()
    return RedisQuotaStore(redis_url, password, fail)
