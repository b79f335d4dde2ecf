"""The journal on Redis: seen ids are keys with a TTL (`SET NX PX` is the atomic
check-and-remember); pending messages are a hash plus a sorted set for their order."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .. import sender_of

if TYPE_CHECKING:
    from .. import Sender
    from . import RedisStore

# Seen-and-pending in one round trip, atomically: a redelivery never re-enters pending.
_ACCEPT = """
if redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then
  redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
  redis.call('ZADD', KEYS[3], ARGV[4], ARGV[2])
  return 1
end
return 0
"""


class RedisJournal:
    def __init__(self, store: RedisStore) -> None:
        self._store = store
        self._accept: Any = None

    async def accept(self, event_id: str, payload: Mapping[str, Any], ttl: float) -> bool:
        store = self._store
        if self._accept is None:
            self._accept = store.redis.register_script(_ACCEPT)
        keys = [store.key("seen", event_id), store.key("pending"), store.key("pending-order")]
        args = [max(1, int(ttl * 1000)), event_id, json.dumps(dict(payload)), time.time()]
        return bool(await self._accept(keys=keys, args=args, client=store.redis))

    async def complete(self, event_id: str) -> None:
        store = self._store
        async with store.redis.pipeline(transaction=True) as pipe:
            pipe.hdel(store.key("pending"), event_id)
            pipe.zrem(store.key("pending-order"), event_id)
            await pipe.execute()

    async def pending(self) -> list[Mapping[str, Any]]:
        store = self._store
        ids = await store.redis.zrange(store.key("pending-order"), 0, -1)
        if not ids:
            return []
        values = await store.redis.hmget(store.key("pending"), ids)
        return [json.loads(value) for value in values if value is not None]

    async def forget(self, senders: Sequence[Sender], keep: str | None = None) -> int:
        store = self._store
        order = store.key("pending-order")
        limit = await store.redis.zscore(order, keep) if keep else None
        ids = await store.redis.zrangebyscore(order, "-inf", "+inf" if limit is None else limit)
        ids = [event for event in ids if event != keep]
        if not ids:
            return 0
        values = await store.redis.hmget(store.key("pending"), ids)
        wanted = set(senders)
        drop = [
            event
            for event, value in zip(ids, values, strict=True)
            if value is not None and sender_of(json.loads(value)) in wanted
        ]
        if drop:
            async with store.redis.pipeline(transaction=True) as pipe:
                pipe.hdel(store.key("pending"), *drop)
                pipe.zrem(order, *drop)
                await pipe.execute()
        return len(drop)

    async def purge(self, now: float) -> int:
        return 0  # seen ids expire by their own TTL
