"""The journal in SQLite: one row per accepted event, remembered until `expires` (dedup), pending
while `payload` is set."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .. import sender_of

if TYPE_CHECKING:
    from .. import Sender
    from . import SqliteStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    event_id TEXT PRIMARY KEY,
    expires REAL NOT NULL,
    accepted REAL NOT NULL,
    payload TEXT
);
CREATE INDEX IF NOT EXISTS events_expires ON events (expires);
CREATE INDEX IF NOT EXISTS events_pending ON events (accepted) WHERE payload IS NOT NULL;
"""

_PURGE_EVERY = 60.0  # seconds between sweeps of expired event ids


class SqliteJournal:
    def __init__(self, store: SqliteStore) -> None:
        self._store = store
        self._next_purge = 0.0

    async def accept(self, event_id: str, payload: Mapping[str, Any], ttl: float) -> bool:
        db = self._store.db
        now = self._store.clock()
        if now >= self._next_purge:
            self._next_purge = now + _PURGE_EVERY
            await db.execute("DELETE FROM events WHERE expires < ? AND payload IS NULL", (now,))
        # New, or seen so long ago that it expired: (re)accept. Otherwise a duplicate.
        cursor = await db.execute(
            "INSERT INTO events (event_id, expires, accepted, payload) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (event_id) DO UPDATE SET expires = excluded.expires,"
            " accepted = excluded.accepted, payload = excluded.payload"
            " WHERE events.expires < excluded.accepted",
            (event_id, now + ttl, now, json.dumps(dict(payload))),
        )
        return cursor.rowcount == 1

    async def complete(self, event_id: str) -> None:
        await self._store.db.execute(
            "UPDATE events SET payload = NULL WHERE event_id = ?", (event_id,)
        )

    async def pending(self) -> list[Mapping[str, Any]]:
        rows = await self._store.db.execute_fetchall(
            "SELECT payload FROM events WHERE payload IS NOT NULL ORDER BY accepted, rowid"
        )
        return [json.loads(row[0]) for row in rows]

    async def forget(self, senders: Sequence[Sender], keep: str | None = None) -> int:
        db = self._store.db
        wanted = set(senders)
        # Pending messages are few (those under way, or left by a crash): filter them here.
        rows = await db.execute_fetchall(
            "SELECT event_id, payload FROM events WHERE payload IS NOT NULL AND event_id != ?"
            " AND accepted <= coalesce((SELECT accepted FROM events WHERE event_id = ?), 1e300)",
            (keep or "", keep or ""),
        )
        drop = [event for event, payload in rows if sender_of(json.loads(payload)) in wanted]
        if drop:
            marks = ",".join("?" * len(drop))
            await db.execute(f"UPDATE events SET payload = NULL WHERE event_id IN ({marks})", drop)
        return len(drop)

    async def purge(self, now: float) -> int:
        cursor = await self._store.db.execute(
            "DELETE FROM events WHERE expires < ? AND payload IS NULL", (now,)
        )
        return cursor.rowcount
