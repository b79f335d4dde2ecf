"""What must outlive a restart, behind one small interface.

`accept` is the heart of it: in one step it remembers a platform event id (so a redelivery is
dropped) and keeps the message as pending until `complete` (so a crash between the two loses
nothing: the next start answers it). SQLite is the embedded default; Redis implements the same
protocol for several processes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from ..config import BridgeSettings


class Store(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise if the store cannot be reached (readiness)."""

    async def accept(self, event_id: str, payload: Mapping[str, Any], ttl: float) -> bool:
        """Remember the event and keep it pending; False if the id was seen before."""

    async def complete(self, event_id: str) -> None:
        """The message was answered (or given up on): no longer pending."""

    async def pending(self) -> list[Mapping[str, Any]]:
        """Accepted messages not yet completed, oldest first."""

    async def get_state(self, session_key: str, backend: str) -> dict[str, Any]: ...

    async def put_state(self, session_key: str, backend: str, state: Mapping[str, Any]) -> None: ...

    async def sessions(self) -> int:
        """How many sessions have state (for the open-sessions gauge)."""

    async def hit(self, key: str, window: float, now: float) -> int:
        """Count one event for `key` in the fixed window of `window` seconds holding `now`;
        the count so far in that window, this one included (rate limits)."""


def open_store(settings: BridgeSettings) -> Store:
    if settings.store.type == "redis":
        from .redis import RedisStore  # imported only when configured

        return RedisStore(settings.store.url)
    from .sqlite import SqliteStore

    return SqliteStore(settings.store_path())


__all__ = ["Store", "open_store"]
