"""The embedded store: one SQLite file (WAL), or `:memory:` for tests."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import aiosqlite

# One row per accepted event: remembered until `expires` (dedup), pending while `payload` is set.
# Every operation is one autocommitted statement: one round trip to aiosqlite's thread.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    event_id TEXT PRIMARY KEY,
    expires REAL NOT NULL,
    accepted REAL NOT NULL,
    payload TEXT
);
CREATE INDEX IF NOT EXISTS events_expires ON events (expires);
CREATE INDEX IF NOT EXISTS events_pending ON events (accepted) WHERE payload IS NOT NULL;
CREATE TABLE IF NOT EXISTS rates (
    key TEXT PRIMARY KEY,
    window_start REAL NOT NULL,
    count INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS state (
    session_key TEXT NOT NULL,
    backend TEXT NOT NULL,
    value TEXT NOT NULL,
    updated REAL NOT NULL,
    PRIMARY KEY (session_key, backend)
);
"""

_PURGE_EVERY = 60.0  # seconds between sweeps of expired event ids


class SqliteStore:
    def __init__(self, path: str, clock: Callable[[], float] = time.time) -> None:
        self._path = path
        self._clock = clock
        self._db: aiosqlite.Connection | None = None
        self._next_purge = 0.0

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError("store is not open")
        return self._db

    async def open(self) -> None:
        if self._path != ":memory:":
            Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        self._db = await aiosqlite.connect(self._path, isolation_level=None)  # autocommit
        await self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode survives a process crash; only a power loss can drop the last commits.
        await self._db.execute("PRAGMA synchronous=NORMAL")
        await self._db.executescript(_SCHEMA)

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    async def ping(self) -> None:
        await self.db.execute_fetchall("SELECT 1")

    async def accept(self, event_id: str, payload: Mapping[str, Any], ttl: float) -> bool:
        now = self._clock()
        if now >= self._next_purge:
            self._next_purge = now + _PURGE_EVERY
            await self.db.execute(
                "DELETE FROM events WHERE expires < ? AND payload IS NULL", (now,)
            )
        # New, or seen so long ago that it expired: (re)accept. Otherwise a duplicate.
        cursor = await self.db.execute(
            "INSERT INTO events (event_id, expires, accepted, payload) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (event_id) DO UPDATE SET expires = excluded.expires,"
            " accepted = excluded.accepted, payload = excluded.payload"
            " WHERE events.expires < excluded.accepted",
            (event_id, now + ttl, now, json.dumps(dict(payload))),
        )
        return cursor.rowcount == 1

    async def complete(self, event_id: str) -> None:
        await self.db.execute("UPDATE events SET payload = NULL WHERE event_id = ?", (event_id,))

    async def pending(self) -> list[Mapping[str, Any]]:
        rows = await self.db.execute_fetchall(
            "SELECT payload FROM events WHERE payload IS NOT NULL ORDER BY accepted, rowid"
        )
        return [json.loads(row[0]) for row in rows]

    async def get_state(self, session_key: str, backend: str) -> dict[str, Any]:
        rows = await self.db.execute_fetchall(
            "SELECT value FROM state WHERE session_key = ? AND backend = ?", (session_key, backend)
        )
        return json.loads(rows[0][0]) if rows else {}

    async def put_state(self, session_key: str, backend: str, state: Mapping[str, Any]) -> None:
        await self.db.execute(
            "INSERT INTO state (session_key, backend, value, updated) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (session_key, backend) DO UPDATE"
            " SET value = excluded.value, updated = excluded.updated",
            (session_key, backend, json.dumps(dict(state)), self._clock()),
        )

    async def hit(self, key: str, window: float, now: float) -> int:
        start = now - now % window
        # One row per key: a new window starts the count again (the CASE sees the old row).
        rows = await self.db.execute_fetchall(
            "INSERT INTO rates (key, window_start, count) VALUES (?, ?, 1)"
            " ON CONFLICT (key) DO UPDATE SET"
            " count = CASE WHEN rates.window_start = excluded.window_start"
            " THEN rates.count + 1 ELSE 1 END,"
            " window_start = excluded.window_start"
            " RETURNING count",
            (key, start),
        )
        return int(rows[0][0])

    async def sessions(self) -> int:
        rows = await self.db.execute_fetchall("SELECT COUNT(DISTINCT session_key) FROM state")
        return int(rows[0][0]) if rows else 0
