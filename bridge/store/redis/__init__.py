"""The shared store for several processes: the same protocols as SQLite, on Redis.

One client, shared by the store's parts (`journal`, `sessions`, `counters`), each in a module of
its own; every key starts with the store's prefix.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from . import counters, journal, sessions


class RedisStore:
    def __init__(self, url: str, prefix: str = "botbridge") -> None:
        self._url = url
        self.prefix = prefix
        self._redis: aioredis.Redis | None = None
        self.journal = journal.RedisJournal(self)
        self.sessions = sessions.RedisSessions(self)
        self.counters = counters.RedisCounters(self)

    @property
    def redis(self) -> aioredis.Redis:
        if self._redis is None:
            raise RuntimeError("store is not open")
        return self._redis

    def key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    async def open(self) -> None:
        self._redis = aioredis.from_url(self._url, decode_responses=True)
        await self._redis.ping()

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    async def ping(self) -> None:
        await self.redis.ping()
