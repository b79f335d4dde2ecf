"""The shared store for several processes: the same protocols as SQLite, on Redis.

One client, shared by the store's parts (`journal`, `sessions`, `counters`), each in a module of
its own; every key starts with the store's prefix. The split roles (`botbridge run --role
ingress|worker`) also use `workqueue` (Redis Streams) and `leases` (leases with fencing tokens);
their keys carry a Redis Cluster hash tag (`tagged`), one per partition or lease.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from . import counters, fencing, journal, pacing, sessions, workqueue
from ._errors import mapped

# Commands wait this long for a free connection before failing as `StoreUnavailable`.
POOL_TIMEOUT = 20.0


class RedisStore:
    def __init__(self, url: str, prefix: str = "botbridge", *, connections: int = 128) -> None:
        """`connections`: the most open at once. Commands beyond that wait for one (a burst of
        events must queue, not fail); a worker's partition readers each hold one while idle."""
        self._url = url
        self.prefix = prefix
        self.connections = connections
        self._redis: aioredis.Redis | None = None
        self.journal = journal.RedisJournal(self)
        self.sessions = mapped(sessions.RedisSessions(self))
        self.counters = mapped(counters.RedisCounters(self))
        self.leases = fencing.RedisLeases(self)
        self.workqueue = workqueue.RedisWorkQueue(self)
        self.pacing = pacing.RedisPacing(self)  # rate limits shared by all processes

    @property
    def redis(self) -> aioredis.Redis:
        if self._redis is None:
            raise RuntimeError("store is not open")
        return self._redis

    def key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def tagged(self, tag: str, *parts: str) -> str:
        """A key in the hash slot of `tag`: `{prefix}:{tag}:parts` (Redis Cluster keeps every
        key with the same tag on one node, so one script may touch them all)."""
        return ":".join((self.prefix, f"{{{tag}}}", *parts))

    async def open(self) -> None:
        pool = aioredis.BlockingConnectionPool.from_url(
            self._url, decode_responses=True, max_connections=self.connections, timeout=POOL_TIMEOUT
        )
        self._redis = aioredis.Redis.from_pool(pool)  # closes the pool with the client
        await self._redis.ping()

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    async def ping(self) -> None:
        await self.redis.ping()
