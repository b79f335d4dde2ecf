"""Session state on Redis: one hash per session (`session:{key}`, backend → JSON) that expires
when the session has been idle for the TTL; a sorted set of sessions by last use (listing,
counting, purging); a set of session keys per owner (for /forget); the anonymous /forget markers.

A person's session hashes and their owner set share their owner's hash slot on Redis Cluster
(`o:{owner}`), so each is written in one transaction; the index and the markers are single
keys, written by commands of their own (see `put` and `forget` for why that is safe).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ...session import owner_of
from .. import SessionInfo, _forgotten
from ._batch import together

if TYPE_CHECKING:
    from . import RedisStore


def _state(store: RedisStore, session_key: str) -> str:
    return _owned(store, owner_of(session_key), "session", session_key)


def _owned(store: RedisStore, owner: str, *parts: str) -> str:
    return store.slot(f"o:{owner}", *parts)


def where(store: RedisStore, session_key: str, backend: str) -> tuple[list[str], list[str]]:
    """The keys and fields of a session's state for `backend` and of its /forget marker (the
    journal's `asked` reads them in its own script on a single server)."""
    tag = _forgotten.tag(store.forget_secret, session_key)
    return [_state(store, session_key), store.key("forgotten")], [backend, tag]


async def read(store: RedisStore, session_key: str, backend: str) -> dict[str, Any]:
    """What `RedisSessions.get` returns."""
    (state, markers), (backend, tag) = where(store, session_key, backend)
    async with store.redis.pipeline(transaction=False) as pipe:  # one round trip
        pipe.hget(state, backend)
        pipe.hget(markers, tag)
        return state_of(*await pipe.execute())


def state_of(value: str | None, salt: str | None) -> dict[str, Any]:
    """What `RedisSessions.get` returns, from the state's value and the marker's salt."""
    if value:
        return json.loads(value)
    return {"salt": salt} if salt else {}


# KEYS: the session's hash, its owner's set of sessions[, the last-use index]. ARGV: backend,
# state, ttl s, session key[, now]. The state and the owner's set (/forget finds the state
# through it) in one step; a Lua script, not MULTI: one slot either way, and cheaper on a cluster.
_PUT = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('SADD', KEYS[2], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[3])
if #KEYS == 3 then redis.call('ZADD', KEYS[3], ARGV[5], ARGV[4]) end
return 1
"""


class RedisSessions:
    def __init__(self, store: RedisStore) -> None:
        self._store = store
        self._put: Any = None

    async def get(self, session_key: str, backend: str) -> dict[str, Any]:
        return await read(self._store, session_key, backend)

    async def put(self, session_key: str, backend: str, state: Mapping[str, Any]) -> None:
        store = self._store
        if self._put is None:
            self._put = store.redis.register_script(_PUT)
        owner = owner_of(session_key)
        keys = [_state(store, session_key), _owned(store, owner, "owner", owner)]
        args = [backend, json.dumps(dict(state)), max(1, int(store.session_ttl)), session_key]
        index, now = store.key("session-index"), store.clock()
        if not store.cluster:  # one server: the last-use index in the same script
            await self._put(keys=[*keys, index], args=[*args, now], client=store.redis)
            return
        # A cluster: the index is a slot of its own, written at the same time, apart. An entry
        # there without state lists nothing and is purged; state not yet indexed is still
        # found (by /forget too: through the owner's set, written with it) and expires.
        await together(
            self._put(keys=keys, args=args, client=store.redis),
            store.redis.zadd(index, {session_key: now}),
        )

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
                pipe.hgetall(_state(store, key))
            states = await pipe.execute()
        return [
            SessionInfo(key, backend, updated, len(value.encode()))
            for (key, updated), state in zip(ranked, states, strict=True)
            for backend, value in sorted(state.items())
        ]

    async def forget(self, owners: Sequence[str]) -> list[str]:
        store, redis = self._store, self._store.redis
        async with redis.pipeline(transaction=False) as pipe:
            for owner in owners:
                pipe.smembers(_owned(store, owner, "owner", owner))
            found = await pipe.execute()
        keys = sorted({key for members in found for key in members})
        if keys:
            # The markers first: a session whose state is gone must never reach its server
            # under its old id (a marker beside state that outlived a failure is harmless:
            # state wins, and the next /forget deletes it).
            salts = {_forgotten.tag(store.forget_secret, k): _forgotten.new_salt() for k in keys}
            await redis.hset(store.key("forgotten"), mapping=salts)
        for owner, members in zip(owners, found, strict=True):
            async with redis.pipeline(transaction=True) as pipe:  # one slot: the owner's
                for key in members:
                    pipe.delete(_state(store, key))
                pipe.delete(_owned(store, owner, "owner", owner))
                await pipe.execute()
        if keys:
            await redis.zrem(store.key("session-index"), *keys)
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
