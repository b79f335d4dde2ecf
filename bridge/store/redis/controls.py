"""Admins' decisions on Redis: one hash (`controls`), person → JSON, read once per message."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .. import Control

if TYPE_CHECKING:
    from . import RedisStore


class RedisControls:
    def __init__(self, store: RedisStore) -> None:
        self._store = store

    async def get(self, subject: str) -> Control:
        store = self._store
        value = await store.redis.hget(store.key("controls"), subject)
        if not value:
            return Control()
        data = json.loads(value)
        return Control(bool(data.get("blocked")), data.get("budget"))

    async def set(self, subject: str, control: Control) -> None:
        store = self._store
        if control == Control():
            await store.redis.hdel(store.key("controls"), subject)
            return
        value = json.dumps({"blocked": control.blocked, "budget": control.budget})
        await store.redis.hset(store.key("controls"), subject, value)

    async def forget(self, subjects: Sequence[str]) -> int:
        if not subjects:
            return 0
        store = self._store
        return int(await store.redis.hdel(store.key("controls"), *subjects))
