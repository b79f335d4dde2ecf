"""Session state on Redis: one hash per backend (session key → JSON), and the set of sessions."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from . import RedisStore


class RedisSessions:
    def __init__(self, store: RedisStore) -> None:
        self._store = store

    async def get(self, session_key: str, backend: str) -> dict[str, Any]:
        store = self._store
        value = await store.redis.hget(store.key("state", backend), session_key)
        return json.loads(value) if value else {}

    async def put(self, session_key: str, backend: str, state: Mapping[str, Any]) -> None:
        store = self._store
        async with store.redis.pipeline(transaction=True) as pipe:  # one round trip, both or none
            pipe.hset(store.key("state", backend), session_key, json.dumps(dict(state)))
            pipe.sadd(store.key("sessions"), session_key)
            await pipe.execute()

    async def count(self) -> int:
        store = self._store
        return int(await store.redis.scard(store.key("sessions")))
