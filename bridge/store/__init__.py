"""What must outlive a restart, behind small interfaces, one per reason to change.

A `Store` is a connection (SQLite file or Redis) with four parts: the `journal` (each accepted
message through its stages until it is completed: see `bridge.journal`; `accept` also remembers
the platform's event id, so a redelivery is dropped), `sessions` (each session's backend state,
indexed by the person it belongs to, expiring when idle), `counters` (rate-limit windows and daily
token counts) and `controls` (what admins decided about a person: a block, a personal budget).
SQLite is the embedded default, one process per file; Redis implements the same protocols for
several processes, each pending message owned by one.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..config import BridgeSettings
from ..journal import Entry, Outcome, Reply, SessionWrite, Shown

# A message's sender as the journal keeps it: (platform, workspace, platform user id).
Sender = tuple[str, str | None, str]


def sender_of(payload: Mapping[str, Any]) -> tuple[Any, Any, Any]:
    """The `Sender` of a pending message's payload (an `Inbound` as a dict)."""
    return (payload.get("platform"), payload.get("workspace"), payload.get("sender_id"))


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
        anything is sent, and its first part not yet posted (`Reply.posted`: the parts a stream
        cut by a crash delivered, recorded as sent) marked as sending. The time of that mark
        (None: nothing left to post)."""

    async def streaming(self, event_id: str, shown: Shown) -> None:
        """Still asked, the answer streaming: what the user sees so far, replacing the last
        record (kept until the message is completed)."""

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

    async def forget(self, senders: Sequence[Sender], keep: str | None = None) -> int:
        """Drop the text of pending messages from these senders accepted no later than `keep`
        (the message being answered now, which is itself kept; None: all of them). The event ids
        stay, for deduplication. How many messages were dropped."""

    async def purge(self, now: float) -> int:
        """Delete event ids remembered past their TTL (not pending ones); how many."""



@dataclass(frozen=True, slots=True)
class SessionInfo:
    """One row of `botbridge sessions`: never the state itself (it holds message text)."""

    key: str
    backend: str
    updated: float  # wall clock of the last change
    size: int  # bytes of stored state


class Sessions(Protocol):
    async def get(self, session_key: str, backend: str) -> dict[str, Any]:
        """The backend's state for this session; empty when new, `{"salt": …}` when new after a
        /forget (so the session's next server-side id differs from every earlier one)."""

    async def put(self, session_key: str, backend: str, state: Mapping[str, Any]) -> None:
        """Store the state; the session's idle time starts again (`bridge.session_ttl`)."""

    async def count(self) -> int:
        """How many sessions have state (for the open-sessions gauge)."""

    async def list(self, limit: int | None = None) -> list[SessionInfo]:
        """Sessions with state, the most recently used first."""

    async def forget(self, owners: Sequence[str]) -> list[str]:
        """Delete the state of every session belonging to one of `owners` (the user part of a
        session key: `tg.42`, or `42` with raw keys), leaving for each only an anonymous marker
        that gives its next server-side id a new salt. The keys deleted."""

    async def purge(self, now: float) -> int:
        """Delete sessions idle for longer than the TTL; how many."""


class Counters(Protocol):
    async def hit(self, key: str, window: float, now: float) -> int:
        """Count one event for `key` in the fixed window of `window` seconds holding `now`;
        the count so far in that window, this one included (rate limits)."""

    async def add(self, day: str, pairs: Sequence[tuple[str, str]], amount: int) -> None:
        """Add `amount` tokens to each (subject, scope) count of `day` (an ISO date); a count of
        an earlier day starts again from zero."""

    async def tokens(self, day: str, subjects: Sequence[str]) -> dict[str, dict[str, int]]:
        """`day`'s token counts: subject → scope → tokens (absent: zero)."""

    async def forget(self, subjects: Sequence[str]) -> int:
        """Delete every rate and token count of these subjects; how many."""

    async def purge(self, now: float, day: str) -> int:
        """Delete rate windows that ended before `now` and token counts of days before `day`."""


@dataclass(frozen=True, slots=True)
class Control:
    """What admins decided about one person."""

    blocked: bool = False
    budget: int | None = None  # a personal daily token budget; None: the configured one


class Controls(Protocol):
    async def get(self, subject: str) -> Control: ...

    async def set(self, subject: str, control: Control) -> None:
        """Store it; the default `Control()` deletes the row."""

    async def forget(self, subjects: Sequence[str]) -> int: ...


class Store(Protocol):
    shared: bool  # several processes use it (pending messages have owners and leases)
    journal: Journal
    sessions: Sessions
    counters: Counters
    controls: Controls

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise if the store cannot be reached (readiness)."""

    async def compact(self) -> None:
        """Give the space freed by purges back (SQLite: the file shrinks; Redis: nothing)."""


def open_store(settings: BridgeSettings, *, owner: bool = False) -> Store:
    """The configured store. `owner`: this process answers pending messages (a daemon, the
    console): a SQLite file is then locked for it alone. Tools that only read or edit the store
    beside a running daemon leave it False."""
    if settings.store.type == "redis":
        from .redis import RedisStore  # imported only when configured

        store = settings.store
        # Commands beyond this many at once wait for a connection; each partition a worker
        # holds keeps one in a blocking read.
        connections = store.partitions + 256
        return RedisStore(
            store.url,
            store.prefix,
            lease=store.lease,
            session_ttl=settings.session_ttl,
            connections=connections,
            cluster=store.cluster,
        )
    from .sqlite import SqliteStore

    return SqliteStore(settings.store_path(), owner=owner, session_ttl=settings.session_ttl)


__all__ = [
    "Control",
    "Controls",
    "Counters",
    "Journal",
    "Sender",
    "SessionInfo",
    "Sessions",
    "Store",
    "open_store",
    "sender_of",
]
