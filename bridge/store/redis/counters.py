"""Counters on Redis: one hash per rate-limited key (`rate:{key}`: its window and count) and one
per token subject (`tokens:{subject}`: its day and a count per scope), each expiring after its
window or day is over, so that a subject's counters are found (and forgotten) by name alone."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ._batch import together

if TYPE_CHECKING:
    from . import RedisStore

# A new window starts the count again; the hash expires just after its window.
_HIT = """
if redis.call('HGET', KEYS[1], 'w') ~= ARGV[1] then
  redis.call('HSET', KEYS[1], 'w', ARGV[1], 'n', 0)
end
local n = redis.call('HINCRBY', KEYS[1], 'n', 1)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return n
"""

# For each subject hash: a count of an earlier day is dropped; ARGV: day, amount, ttl, scopes…
# (one per key).
_ADD = """
local scope = 4
for i, key in ipairs(KEYS) do
  if redis.call('HGET', key, 'day') ~= ARGV[1] then
    redis.call('DEL', key)
    redis.call('HSET', key, 'day', ARGV[1])
  end
  redis.call('HINCRBY', key, 's:' .. ARGV[scope], ARGV[2])
  redis.call('EXPIRE', key, ARGV[3])
  scope = scope + 1
end
return 1
"""

_DAY_TTL = 2 * 86400  # a day's counts outlive it, whatever the time zone


class RedisCounters:
    def __init__(self, store: RedisStore) -> None:
        self._store = store
        self._hit: Any = None
        self._add: Any = None

    async def hit(self, key: str, window: float, now: float) -> int:
        store = self._store
        if self._hit is None:
            self._hit = store.redis.register_script(_HIT)
        index = int(now // window)
        expires_ms = max(1, int(((index + 1) * window - now) * 1000) + 1000)
        count = await self._hit(
            keys=[store.key("rate", key)], args=[str(index), expires_ms], client=store.redis
        )
        return int(count)

    async def add(self, day: str, pairs: Sequence[tuple[str, str]], amount: int) -> None:
        if not pairs:
            return
        store = self._store
        if self._add is None:
            self._add = store.redis.register_script(_ADD)
        keys = [store.key("tokens", subject) for subject, _ in pairs]
        scopes = [scope for _, scope in pairs]
        if not store.cluster:  # one server: one script for every count
            await self._add(keys=keys, args=[day, amount, _DAY_TTL, *scopes], client=store.redis)
            return
        # A cluster: each count is a key in a slot of its own, so a script each, all at once
        # (each count is right by itself: a failure between them costs a count, no more).
        add = self._add
        await together(
            *(
                add(keys=[key], args=[day, amount, _DAY_TTL, scope], client=store.redis)
                for key, scope in zip(keys, scopes, strict=True)
            )
        )

    async def tokens(self, day: str, subjects: Sequence[str]) -> dict[str, dict[str, int]]:
        store = self._store
        async with store.redis.pipeline(transaction=False) as pipe:
            for subject in subjects:
                pipe.hgetall(store.key("tokens", subject))
            hashes = await pipe.execute()
        found: dict[str, dict[str, int]] = {}
        for subject, fields in zip(subjects, hashes, strict=True):
            current = fields.get("day") == day
            found[subject] = {
                name[2:]: int(value)
                for name, value in fields.items()
                if current and name.startswith("s:")
            }
        return found

    async def forget(self, subjects: Sequence[str]) -> int:
        if not subjects:
            return 0
        store = self._store
        names = [store.key(kind, s) for s in subjects for kind in ("rate", "tokens")]
        return int(await store.redis.delete(*names))

    async def purge(self, now: float, day: str) -> int:
        return 0  # every counter has a TTL
