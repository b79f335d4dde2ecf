"""Leases on Redis: one holder at a time for a name, kept alive by its holder's heartbeat, and the
atomic take-over of what a holder owned once its lease has expired.

A `Lease` is a key holding its holder's id with a TTL; `acquire` also hands out a fencing token
(a counter that only grows), so a holder that stalled past its lease can be told apart from its
successor by whoever checks tokens. A `Keeper` renews a lease every third of its TTL as a task it
owns. `take_over` moves the items listed under dead holders to a live one in one Lua script, so
two processes can never both take the same item. Each process's journal uses these for "one owner
per pending message"; the scale-out work reuses them for per-partition leases with fencing.

The scripts build key names from a prefix (not all declared in KEYS): fine on one Redis server or
a replicated pair, and on Redis Cluster only because every key they touch carries one hash tag
(the journal's `{journal}`: see `RedisStore.slot`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis

from ...waiting import stopped

log = logging.getLogger("bridge.store")

# KEYS: lease, fence counter. ARGV: holder, ttl ms. The fencing token, or nil if held by another.
_ACQUIRE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return redis.call('INCR', KEYS[2])
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return tonumber(redis.call('GET', KEYS[2]) or '0')
end
return nil
"""

# KEYS: lease. ARGV: holder, ttl ms. 1 renewed, 2 had lapsed and is ours again, 0 held by another.
_RENEW = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 2
end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# KEYS: the set of holders that own items. ARGV: [1] the taker, [2] the prefix of each holder's
# item index (a sorted set: item id → score), [3] the prefix of each holder's lease key, [4] the
# prefix of each item's hash, [5] the hash field a filter applies to, [6..] the values allowed
# (none: any). Items of holders whose lease is gone, and that pass the filter, move to the taker:
# their hash's `owner` field, and their entry in the index. Returns the ids taken.
_TAKE_OVER = """
local me = ARGV[1]
local allowed, any = {}, #ARGV < 6
for i = 6, #ARGV do allowed[ARGV[i]] = true end
local taken = {}
for _, holder in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if holder ~= me and redis.call('EXISTS', ARGV[3] .. holder) == 0 then
    local index = ARGV[2] .. holder
    local items = redis.call('ZRANGE', index, 0, -1, 'WITHSCORES')
    for j = 1, #items, 2 do
      local id, score = items[j], items[j + 1]
      local item = ARGV[4] .. id
      if redis.call('EXISTS', item) == 0 then
        redis.call('ZREM', index, id)
      elseif any or allowed[redis.call('HGET', item, ARGV[5]) or ''] then
        redis.call('HSET', item, 'owner', me)
        redis.call('ZREM', index, id)
        redis.call('ZADD', ARGV[2] .. me, score, id)
        taken[#taken + 1] = id
      end
    end
    if redis.call('ZCARD', index) == 0 then
      redis.call('SREM', KEYS[1], holder)
    end
  end
end
if #taken > 0 then
  redis.call('SADD', KEYS[1], me)
end
return taken
"""


class Lease:
    """The lease on one name, as seen by one would-be holder."""

    def __init__(self, redis: aioredis.Redis, key: str, holder: str, ttl: float) -> None:
        self.key = key
        self.holder = holder
        self.ttl = ttl
        self._redis = redis
        self._ms = max(1, int(ttl * 1000))
        self._acquire = redis.register_script(_ACQUIRE)
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)

    async def acquire(self) -> int | None:
        """Hold the lease (or keep holding it); its fencing token, None if another holds it."""
        token = await self._acquire(
            keys=[self.key, f"{self.key}:fence"], args=[self.holder, self._ms]
        )
        return None if token is None else int(token)

    async def renew(self) -> bool:
        """Extend the lease; False if another holder has it now. A lease that lapsed unclaimed is
        taken back (and logged: items it covered may have been taken over meanwhile)."""
        result = int(await self._renew(keys=[self.key], args=[self.holder, self._ms]))
        if result == 2:
            log.warning(
                "lease %s had lapsed (a stall longer than %gs); held again", self.key, self.ttl
            )
        return result != 0

    async def release(self) -> None:
        await self._release(keys=[self.key], args=[self.holder])


class Keeper:
    """Renews a lease every third of its TTL, as a task it owns, until stopped. Stopping never
    cancels a renewal in flight (a redis-py command cancelled mid-reply can leave its connection
    unusable, and closing the client then hangs): the task is told to stop and finishes it."""

    def __init__(self, lease: Lease) -> None:
        self.lease = lease
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    def start(self) -> None:
        if self._task is None:
            self._stopping.clear()
            self._task = asyncio.create_task(self._beat(), name=f"lease {self.lease.key}")

    async def stop(self, *, release: bool = True) -> None:
        task, self._task = self._task, None
        if task is not None:
            self._stopping.set()
            try:
                await asyncio.wait_for(asyncio.shield(task), self.lease.ttl)
            except TimeoutError:  # a renewal stuck for a whole lease: give up on it
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if release:
            try:
                await self.lease.release()
            except Exception as exc:  # it expires by itself
                log.warning("lease %s not released: %r", self.lease.key, exc)

    async def _beat(self) -> None:
        every = self.lease.ttl / 3
        while not await stopped(self._stopping, every):
            try:
                if not await self.lease.renew():
                    log.error("lease %s is held by another process", self.lease.key)
            except Exception as exc:  # Redis down for a moment: try again at the next beat
                log.warning("lease %s not renewed: %r", self.lease.key, exc)


class TakeOver:
    """Moves items held under dead holders' leases to a live holder (see `_TAKE_OVER`)."""

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        holders: str,
        index_prefix: str,
        lease_prefix: str,
        item_prefix: str,
        filter_field: str = "",
    ) -> None:
        self._script = redis.register_script(_TAKE_OVER)
        self._holders = holders
        self._prefixes = [index_prefix, lease_prefix, item_prefix, filter_field]

    async def __call__(self, taker: str, allowed: Sequence[str] | None = None) -> list[str]:
        args: list[Any] = [taker, *self._prefixes, *(allowed or ())]
        if allowed is not None and not allowed:
            return []  # a filter that lets nothing through
        return [str(i) for i in await self._script(keys=[self._holders], args=args)]
