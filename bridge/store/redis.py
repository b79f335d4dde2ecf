"""The shared store for several processes: the same protocol as SQLite, on Redis.

Seen ids are keys with a TTL (`SET NX EX` is the atomic check-and-remember); pending messages are a
hash plus a sorted set for their order; session state is one hash per backend.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

import redis.asyncio as aioredis

# Seen-and-pending in one round trip, atomically: a redelivery never re-enters pending.
_ACCEPT = """
if redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then
  redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
  redis.call('ZADD', KEYS[3], ARGV[4], ARGV[2])
  return 1
end
return 0
"""


class RedisStore:
    def __init__(self, url: str, prefix: str = "botbridge") -> None:
        self._url = url
        self._prefix = prefix
        self._redis: aioredis.Redis | None = None
        self._accept: Any = None

    @property
    def redis(self) -> aioredis.Redis:
        if self._redis is None:
            raise RuntimeError("store is not open")
        return self._redis

    def _key(self, *parts: str) -> str:
        return ":".join((self._prefix, *parts))

    async def open(self) -> None:
        self._redis = aioredis.from_url(self._url, decode_responses=True)
        self._accept = self._redis.register_script(_ACCEPT)
        await self._redis.ping()

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    async def ping(self) -> None:
        await self.redis.ping()

    async def accept(self, event_id: str, payload: Mapping[str, Any], ttl: float) -> bool:
        keys = [self._key("seen", event_id), self._key("pending"), self._key("pending-order")]
        args = [max(1, int(ttl * 1000)), event_id, json.dumps(dict(payload)), time.time()]
        return bool(await self._accept(keys=keys, args=args, client=self.redis))

    async def complete(self, event_id: str) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hdel(self._key("pending"), event_id)
            pipe.zrem(self._key("pending-order"), event_id)
            await pipe.execute()

    async def pending(self) -> list[Mapping[str, Any]]:
        ids = await self.redis.zrange(self._key("pending-order"), 0, -1)
        if not ids:
            return []
        values = await self.redis.hmget(self._key("pending"), ids)
        return [json.loads(value) for value in values if value is not None]

    async def get_state(self, session_key: str, backend: str) -> dict[str, Any]:
        value = await self.redis.hget(self._key("state", backend), session_key)
        return json.loads(value) if value else {}

    async def put_state(self, session_key: str, backend: str, state: Mapping[str, Any]) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:  # one round trip, both or none
            pipe.hset(self._key("state", backend), session_key, json.dumps(dict(state)))
            pipe.sadd(self._key("sessions"), session_key)
            await pipe.execute()

    async def hit(self, key: str, window: float, now: float) -> int:
        start = int(now // window)
        name = self._key("rate", key, str(start))
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.incr(name)
            pipe.expire(name, int(window) + 1, nx=True)  # the window's counter outlives it briefly
            count, _ = await pipe.execute()
        return int(count)

    async def sessions(self) -> int:
        return int(await self.redis.scard(self._key("sessions")))
