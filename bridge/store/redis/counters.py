"""Rate-limit counters on Redis: one key per (key, window), expiring just after its window."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from . import RedisStore


class RedisCounters:
    def __init__(self, store: RedisStore) -> None:
        self._store = store

    async def hit(self, key: str, window: float, now: float) -> int:
        store = self._store
        name = store.key("rate", key, str(int(now // window)))
        async with store.redis.pipeline(transaction=True) as pipe:
            pipe.incr(name)
            pipe.expire(name, int(window) + 1, nx=True)  # the window's counter outlives it briefly
            count, _ = await pipe.execute()
        return int(count)
