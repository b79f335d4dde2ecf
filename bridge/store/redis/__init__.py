"""The shared store for several processes: the same protocols as SQLite, on Redis.

One client, shared by the store's parts (`journal`, `sessions`, `counters`, `controls`), each in
a module of its own; every key starts with the store's prefix. What expires does so by key TTL
(seen ids, sessions, counters), so Redis itself keeps the size bounded. Each process is an owner
with an id of its own and a lease (`lease:{owner}`) that a heartbeat renews every third of
`lease` seconds while the store is open: the journal's pending messages belong to an owner, and
those of an owner whose lease expired (a dead process) are taken over by the next
`journal.pending()` of a live one. The split roles (`botbridge run
--role ingress|worker`) also use `workqueue` (Redis Streams) and `leases` (leases with fencing
tokens); their keys carry a Redis Cluster hash tag (`tagged`), one per partition or lease.

On Redis Cluster (`cluster=True`: `redis.asyncio.RedisCluster`), every script and transaction
touches one hash slot: the keys that one of them writes together carry one tag (`slot`): a
person's sessions that of their owner, the single-process journal `{journal}`. On a single
server those keys keep the names they always had, untagged, so nothing needs migrating.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from .. import _forgotten
from . import claimed, controls, counters, fencing, journal, pacing, sessions, workqueue
from ._errors import mapped
from .lease import Keeper, Lease

DEFAULT_LEASE = 20.0
DEFAULT_SESSION_TTL = 30 * 86400.0
# Commands wait this long for a free connection before failing as `StoreUnavailable`.
POOL_TIMEOUT = 20.0


# On a cluster, connections per node beyond the commands' share: pipelines (a few at a time:
# /forget, listings, reads of the session state) are not counted by `_QueuedCluster`.
_PIPELINES = 64


class _QueuedCluster(RedisCluster):
    """A cluster client whose commands wait for room, as the single server's blocking pool makes
    them: redis-py's cluster client raises `MaxConnectionsError` once a node has
    `max_connections` in use, and a burst of events must queue, not fail."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        most = kwargs.get("max_connections", 2**31)
        self._room = asyncio.Semaphore(max(1, most - _PIPELINES))

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        async with self._room:
            return await super().execute_command(*args, **kwargs)


class RedisStore:
    shared = True  # several processes: pending messages have owners

    def __init__(
        self,
        url: str,
        prefix: str = "botbridge",
        *,
        lease: float = DEFAULT_LEASE,
        session_ttl: float = DEFAULT_SESSION_TTL,
        clock: Callable[[], float] = time.time,
        connections: int = 128,
        cluster: bool = False,
    ) -> None:
        """`connections`: the most open at once (per node on a cluster). Commands beyond that
        wait for one (a burst of events must queue, not fail); a worker's partition readers
        each hold one while idle. `cluster`: `url` names one node of a Redis Cluster."""
        self._url = url
        self.cluster = cluster
        self.prefix = prefix
        self.lease_ttl = lease
        self.session_ttl = session_ttl
        self.clock = clock
        self.connections = connections
        self.forget_secret = ""  # read at open (see _forgotten)
        # Unique per open store, so a restarted process never mistakes its predecessor's
        # messages for its own (they are taken over once the old lease expires).
        self.owner = uuid.uuid4().hex
        self._redis: aioredis.Redis | RedisCluster | None = None
        self._keeper: Keeper | None = None
        self.journal = journal.RedisJournal(self)
        self.sessions = mapped(sessions.RedisSessions(self))
        self.counters = mapped(counters.RedisCounters(self))
        self.controls = controls.RedisControls(self)
        self.leases = fencing.RedisLeases(self)
        self.workqueue = workqueue.RedisWorkQueue(self)
        self.claimed = mapped(claimed.ClaimedRedisJournal(self))  # the split roles' journal
        self.pacing = pacing.RedisPacing(self)  # rate limits shared by all processes

    @property
    def redis(self) -> aioredis.Redis | RedisCluster:
        if self._redis is None:
            raise RuntimeError("store is not open")
        return self._redis

    def key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def tagged(self, tag: str, *parts: str) -> str:
        """A key in the hash slot of `tag`: `{prefix}:{tag}:parts` (Redis Cluster keeps every
        key with the same tag on one node, so one script may touch them all)."""
        return ":".join((self.prefix, f"{{{tag}}}", *parts))

    def slot(self, tag: str, *parts: str) -> str:
        """A key written together with others of `tag`: in that tag's hash slot on a cluster;
        on a single server its untagged name (`key`), as before clusters were supported."""
        return self.tagged(tag, *parts) if self.cluster else self.key(*parts)

    async def open(self) -> None:
        redis: aioredis.Redis | RedisCluster
        if self.cluster:
            redis = _QueuedCluster.from_url(
                self._url, decode_responses=True, max_connections=self.connections + _PIPELINES
            )
        else:
            pool = aioredis.BlockingConnectionPool.from_url(
                self._url,
                decode_responses=True,
                max_connections=self.connections,
                timeout=POOL_TIMEOUT,
            )
            redis = aioredis.Redis.from_pool(pool)  # closes the pool with the client
        self._redis = redis
        try:
            await redis.ping()
            meta = self.key("meta")
            await redis.hsetnx(meta, "forget-secret", _forgotten.new_secret())
            self.forget_secret = await redis.hget(meta, "forget-secret") or ""
            await sessions.migrate(self)
            key = self.slot(journal.TAG, "lease", self.owner)  # taken over with the journal
            lease = Lease(redis, key, self.owner, self.lease_ttl)
            await lease.acquire()
        except BaseException:
            await self.close()
            raise
        self._keeper = Keeper(lease)
        self._keeper.start()

    async def close(self) -> None:
        if self._keeper is not None:
            # Released at once: what is left pending is taken over without waiting for expiry.
            await self._keeper.stop(release=self._redis is not None)
            self._keeper = None
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    async def ping(self) -> None:
        await self.redis.ping()

    async def compact(self) -> None:
        return None  # Redis frees memory as keys expire or are deleted
