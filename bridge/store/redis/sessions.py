"""Session state on Redis: one hash per session (`session:{key}`, backend → JSON) that expires
when the session has been idle for the TTL; a sorted set of sessions by last use (listing,
counting, purging); a set of session keys per owner (for /forget); the anonymous /forget markers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ...session import owner_of
from .. import SessionInfo, _forgotten

if TYPE_CHECKING:
    from . import RedisStore


class RedisSessions:
    def __init__(self, store: RedisStore) -> None:
        self._store = store

    async def get(self, session_key: str, backend: str) -> dict[str, Any]:
        store = self._store
        tag = _forgotten.tag(store.forget_secret, session_key)
        async with store.redis.pipeline(transaction=False) as pipe:  # one round trip
            pipe.hget(store.key("session", session_key), backend)
            pipe.hget(store.key("forgotten"), tag)
            value, salt = await pipe.execute()
        if value:
            return json.loads(value)
        return {"salt": salt} if salt else {}

    async def put(self, session_key: str, backend: str, state: Mapping[str, Any]) -> None:
        store = self._store
        ttl = max(1, int(store.session_ttl))
        name, owner = store.key("session", session_key), store.key("owner", owner_of(session_key))
        async with store.redis.pipeline(transaction=True) as pipe:  # one round trip, all or none
            pipe.hset(name, backend, json.dumps(dict(state)))
            pipe.expire(name, ttl)
            pipe.zadd(store.key("session-index"), {session_key: store.clock()})
            pipe.sadd(owner, session_key)
            pipe.expire(owner, ttl)
            await pipe.execute()

    async def count(self) -> int:
        store = self._store
        since = store.clock() - store.session_ttl
        return int(await store.redis.zcount(store.key("session-index"), since, "+inf"))

    async def list(self, limit: int | None = None) -> list[SessionInfo]:
        store = self._store
        end = -1 if limit is None else max(0, limit - 1)
        ranked = await store.redis.zrevrange(store.key("session-index"), 0, end, withscores=True)
        async with store.redis.pipeline(transaction=False) as pipe:
            for key, _ in ranked:
                pipe.hgetall(store.key("session", key))
            states = await pipe.execute()
        return [
            SessionInfo(key, backend, updated, len(value.encode()))
            for (key, updated), state in zip(ranked, states, strict=True)
            for backend, value in sorted(state.items())
        ]

    async def forget(self, owners: Sequence[str]) -> list[str]:
        store = self._store
        async with store.redis.pipeline(transaction=False) as pipe:
            for owner in owners:
                pipe.smembers(store.key("owner", owner))
            found = await pipe.execute()
        keys = sorted({key for members in found for key in members})
        async with store.redis.pipeline(transaction=True) as pipe:
            for key in keys:
                pipe.delete(store.key("session", key))
                tag = _forgotten.tag(store.forget_secret, key)
                pipe.hset(store.key("forgotten"), tag, _forgotten.new_salt())
            if keys:
                pipe.zrem(store.key("session-index"), *keys)
            for owner in owners:
                pipe.delete(store.key("owner", owner))
            await pipe.execute()
        return keys

    async def purge(self, now: float) -> int:
        # The state itself expires by TTL; this drops the index entries of expired sessions.
        store = self._store
        index = store.key("session-index")
        return int(await store.redis.zremrangebyscore(index, "-inf", now - store.session_ttl))


async def migrate(store: RedisStore) -> None:
    """Move state kept in the layout before retention (`state:{backend}` hashes and a `sessions`
    set) into per-session keys, once."""
    redis = store.redis
    if await redis.type(store.key("sessions")) != "set":
        return
    pattern = _glob_escape(store.key("state")) + ":*"
    async for name in redis.scan_iter(match=pattern, count=500):
        backend = name[len(store.key("state")) + 1 :]
        for key, value in (await redis.hgetall(name)).items():
            await store.sessions.put(key, backend, json.loads(value))
        await redis.delete(name)
    await redis.delete(store.key("sessions"))


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)
