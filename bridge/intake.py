"""An ingress process's intake: the router's first steps without any answering. Ignore what is
not for the bot, drop a redelivery, and put the message on its session's partition of the work
queue — accepted, durably, in one step — in arrival order per session.

It is what the adapters deliver to under `--role ingress`; it returns once the message is on the
queue (True) or judged to need no answer (False), and raises when the store cannot take it, so
the adapter answers the platform in a way that makes it deliver the event again (HTTP 503, no
Socket Mode ack, the Telegram offset not committed).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, Protocol

from .config import BridgeSettings
from .metrics import Metrics
from .router import needs_answer
from .session import key_for
from .text import cleaned
from .types import Inbound, dedup_id
from .workqueue import partition_of

log = logging.getLogger("bridge.intake")


class Submitter(Protocol):
    """The store's side (`RedisWorkQueue.submit`)."""

    async def submit(
        self, partition: int, event_id: str, payload: Mapping[str, Any], ttl: float
    ) -> bool: ...


class Intake:
    def __init__(self, queue: Submitter, settings: BridgeSettings, metrics: Metrics) -> None:
        self._queue = queue
        self._settings = settings
        self._metrics = metrics
        self._partitions = settings.store.partitions
        # One submit at a time per session, in call order (asyncio locks are fair), so that two
        # messages of one session reach the stream in the order they arrived here.
        self._sessions: dict[str, _Turns] = {}

    async def handle(self, inbound: Inbound) -> bool:
        platform = inbound.platform
        self._metrics.message(platform, "received")
        inbound = await cleaned(inbound)  # what the queue holds is what a worker may read
        if not needs_answer(inbound):
            self._metrics.message(platform, "ignored")
            return False
        key = key_for(inbound, self._settings.session_keys)
        event = dedup_id(inbound)
        partition = partition_of(key, self._partitions)
        async with self._turn(key):
            try:
                fresh = await self._queue.submit(
                    partition, event, inbound.to_dict(), self._settings.dedup_ttl
                )
            except Exception as exc:
                log.error("store failed to accept %s: %r", event, exc)
                raise
        if not fresh:
            self._metrics.message(platform, "duplicate")
            log.info("duplicate event %s dropped", event, extra={"platform": platform})
        return fresh

    @asynccontextmanager
    async def _turn(self, key: str) -> AsyncIterator[None]:
        turns = self._sessions.get(key)
        if turns is None:
            turns = self._sessions[key] = _Turns()
        turns.waiting += 1
        try:
            async with turns.lock:
                yield
        finally:
            turns.waiting -= 1
            if not turns.waiting:
                del self._sessions[key]


class _Turns:
    __slots__ = ("lock", "waiting")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.waiting = 0
