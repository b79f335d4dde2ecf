"""The shared store for several processes: the same protocols as SQLite, on Redis.

One client, shared by the store's parts (`journal`, `sessions`, `counters`, `controls`), each in
a module of its own; every key starts with the store's prefix. What expires does so by key TTL
(seen ids, sessions, counters), so Redis itself keeps the size bounded.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import redis.asyncio as aioredis

from .. import _forgotten
from . import controls, counters, journal, sessions

DEFAULT_SESSION_TTL = 30 * 86400.0


class RedisStore:
    def __init__(
        self,
        url: str,
        prefix: str = "botbridge",
        *,
        session_ttl: float = DEFAULT_SESSION_TTL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._url = url
        self.prefix = prefix
        self.session_ttl = session_ttl
        self.clock = clock
        self.forget_secret = ""  # read at open (see _forgotten)
        self._redis: aioredis.Redis | None = None
        self.journal = journal.RedisJournal(self)
        self.sessions = sessions.RedisSessions(self)
        self.counters = counters.RedisCounters(self)
        self.controls = controls.RedisControls(self)

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
        meta = self.key("meta")
        await self._redis.hsetnx(meta, "forget-secret", _forgotten.new_secret())
        self.forget_secret = await self._redis.hget(meta, "forget-secret") or ""
        await sessions.migrate(self)

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    async def ping(self) -> None:
        await self.redis.ping()

    async def compact(self) -> None:
        return None  # Redis frees memory as keys expire or are deleted
