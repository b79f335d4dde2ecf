"""What must outlive a restart, behind small interfaces, one per reason to change.

A `Store` is a connection (SQLite file or Redis) with three parts: the `journal` (each accepted
message through its stages until it is completed: see `bridge.journal`; `accept` also remembers
the platform's event id, so a redelivery is dropped), `sessions` (each session's backend state)
and `counters` (rate-limit windows). SQLite is the embedded default, one process per file;
Redis implements the same protocols for several processes, each pending message owned by one.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any, Protocol

from ..config import BridgeSettings
from ..journal import Entry, Outcome, Reply, SessionWrite


class Journal(Protocol):
    """The delivery journal's writes. Each is one round trip; every write but `accept` raises
    `NotOwner` when the message is no longer this process's to write (another took it over) or
    is not at the stage the write expects."""

    async def accept(self, event_id: str, payload: Mapping[str, Any], ttl: float) -> bool:
        """Remember the event for `ttl` seconds and keep it pending (stage accepted); False if
        the id was seen before (a redelivery)."""

    async def asked(
        self, event_id: str, session_key: str, backend: str
    ) -> tuple[int, dict[str, Any]]:
        """Stage asked, recorded before the backend call: how many calls have begun, this one
        included (more than one only after a crash), and the session's state for `backend` (as
        `sessions.get` gives it), read in the same round trip because the call needs both."""

    async def answered(
        self, event_id: str, reply: Reply, session: SessionWrite | None = None
    ) -> float | None:
        """Stage answered: the reply (and the backend's new session state, if any) stored before
        anything is sent, and part 0 marked as sending. The time of that mark (None: no parts)."""

    async def sending(self, event_id: str, part: int, at: float | None) -> None:
        """Mark `part` as sending since `at` (before another attempt), or clear the mark (None:
        the last attempt provably posted nothing)."""

    async def sent(self, event_id: str, part: int, message_id: str) -> float:
        """`part` is posted as `message_id`, and the next part is sending from the time returned.
        (After the last part, `complete` instead: the ids are not kept.)"""

    async def complete(self, event_id: str, outcome: Outcome) -> None:
        """No longer pending: the message and its reply are dropped, the event id and the
        outcome kept until the id's TTL (dedup)."""

    async def pending(self, platforms: Collection[str] | None = None) -> list[Entry]:
        """The pending messages of `platforms` (None: all) that no live process is answering,
        oldest first, now this process's: on SQLite (one process per file) those not handed out
        before by this store; on Redis those whose owner's lease expired."""


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
    shared: bool  # several processes use it (pending messages have owners and leases)
    journal: Journal
    sessions: Sessions
    counters: Counters

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise if the store cannot be reached (readiness)."""


def open_store(settings: BridgeSettings, *, owner: bool = False) -> Store:
    """The configured store. `owner`: this process answers pending messages (a daemon, the
    console): a SQLite file is then locked for it alone. Tools that only read or edit the store
    beside a running daemon leave it False."""
    if settings.store.type == "redis":
        from .redis import RedisStore  # imported only when configured

        store = settings.store
        return RedisStore(store.url, store.prefix, lease=store.lease)
    from .sqlite import SqliteStore

    return SqliteStore(settings.store_path(), owner=owner)


__all__ = ["Counters", "Journal", "Sessions", "Store", "open_store"]
