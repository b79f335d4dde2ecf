"""The embedded store: one SQLite file (WAL), or `:memory:` for tests."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import aiosqlite

_SCHEMA = """
CREATE TABLE IF NOT EXISTS seen (event_id TEXT PRIMARY KEY, expires REAL NOT NULL);
CREATE INDEX IF NOT EXISTS seen_expires ON seen (expires);
CREATE TABLE IF NOT EXISTS pending (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT UNIQUE NOT NULL,
    payload TEXT NOT NULL
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
        self._db = await aiosqlite.connect(self._path)
        await self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode survives a process crash; only a power loss can drop the last commits.
        await self._db.execute("PRAGMA synchronous=NORMAL")
        await self._db.executescript(_SCHEMA)
        await self._db.commit()

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    async def ping(self) -> None:
        await self.db.execute("SELECT 1")

    async def accept(self, event_id: str, payload: Mapping[str, Any], ttl: float) -> bool:
        now = self._clock()
        db = self.db
        if now >= self._next_purge:
            self._next_purge = now + _PURGE_EVERY
            await db.execute("DELETE FROM seen WHERE expires < ?", (now,))
        cursor = await db.execute(
            "INSERT INTO seen (event_id, expires) VALUES (?, ?) ON CONFLICT (event_id) DO UPDATE"
            " SET expires = excluded.expires WHERE seen.expires < ?",
            (event_id, now + ttl, now),
        )
        fresh = cursor.rowcount == 1
        if fresh:
            await db.execute(
                "INSERT OR IGNORE INTO pending (event_id, payload) VALUES (?, ?)",
                (event_id, json.dumps(dict(payload))),
            )
        await db.commit()
        return fresh

    async def complete(self, event_id: str) -> None:
        await self.db.execute("DELETE FROM pending WHERE event_id = ?", (event_id,))
        await self.db.commit()

    async def pending(self) -> list[Mapping[str, Any]]:
        async with self.db.execute("SELECT payload FROM pending ORDER BY seq") as cursor:
            return [json.loads(row[0]) async for row in cursor]

    async def get_state(self, session_key: str, backend: str) -> dict[str, Any]:
        async with self.db.execute(
            "SELECT value FROM state WHERE session_key = ? AND backend = ?", (session_key, backend)
        ) as cursor:
            row = await cursor.fetchone()
        return json.loads(row[0]) if row else {}

    async def put_state(self, session_key: str, backend: str, state: Mapping[str, Any]) -> None:
        await self.db.execute(
            "INSERT INTO state (session_key, backend, value, updated) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (session_key, backend) DO UPDATE"
            " SET value = excluded.value, updated = excluded.updated",
            (session_key, backend, json.dumps(dict(state)), self._clock()),
        )
        await self.db.commit()

    async def sessions(self) -> int:
        async with self.db.execute("SELECT COUNT(DISTINCT session_key) FROM state") as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row else 0
