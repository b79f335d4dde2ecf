"""What must outlive a restart, behind small interfaces, one per reason to change.

A `Store` is a connection (SQLite file or Redis) with three parts: the `journal` (each accepted
message until it is answered: `accept` remembers a platform event id, so a redelivery is dropped,
and keeps the message pending until `complete`, so a crash in between loses nothing), `sessions`
(each session's backend state) and `counters` (rate-limit windows). SQLite is the embedded
default; Redis implements the same protocols for several processes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from ..config import BridgeSettings


class Journal(Protocol):
    async def accept(self, event_id: str, payload: Mapping[str, Any], ttl: float) -> bool:
        """Remember the event and keep it pending; False if the id was seen before."""

    async def complete(self, event_id: str) -> None:
        """The message was answered (or given up on): no longer pending."""

    async def pending(self) -> list[Mapping[str, Any]]:
        """Accepted messages not yet completed, oldest first."""


class Sessions(Protocol):
    async def get(self, session_key: str, backend: str) -> dict[str, Any]:
        """The backend's state for this session; empty when new."""

    async def put(self, session_key: str, backend: str, state: Mapping[str, Any]) -> None: ...

    async def count(self) -> int:
        """How many sessions have state (for the open-sessions gauge)."""


class Counters(Protocol):
    async def hit(self, key: str, window: float, now: float) -> int:
        """Count one event for `key` in the fixed window of `window` seconds holding `now`;
        the count so far in that window, this one included (rate limits)."""


class Store(Protocol):
    journal: Journal
    sessions: Sessions
    counters: Counters

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise if the store cannot be reached (readiness)."""


def open_store(settings: BridgeSettings) -> Store:
    if settings.store.type == "redis":
        from .redis import RedisStore  # imported only when configured

        store = settings.store
        # Each partition a worker holds keeps a connection in a blocking read; the rest serve
        # the answers under way and bursts of events.
        connections = store.partitions + 4 * settings.max_in_flight + 32
        return RedisStore(store.url, store.prefix, connections=connections)
    from .sqlite import SqliteStore

    return SqliteStore(settings.store_path())


__all__ = ["Counters", "Journal", "Sessions", "Store", "open_store"]
