"""Session state in SQLite: one row per (session, backend), its JSON value, its last update and
its owner (the user part of the key, for /forget); plus the anonymous markers /forget leaves."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ...session import owner_of
from .. import SessionInfo, _forgotten
from ._batched import BatchedConnection

if TYPE_CHECKING:
    from . import SqliteStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS state (
    session_key TEXT NOT NULL,
    backend TEXT NOT NULL,
    value TEXT NOT NULL,
    updated REAL NOT NULL,
    owner TEXT,
    PRIMARY KEY (session_key, backend)
);
CREATE INDEX IF NOT EXISTS state_updated ON state (updated);
CREATE TABLE IF NOT EXISTS forgotten (
    tag TEXT PRIMARY KEY,
    salt TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


async def migrate(db: BatchedConnection) -> None:
    """A file from before the owner index gets it (computed from each key)."""
    columns = {row[1] for row in await db.execute_fetchall("PRAGMA table_info(state)")}
    if "owner" not in columns:
        await db.execute("ALTER TABLE state ADD COLUMN owner TEXT")
        rows = await db.execute_fetchall("SELECT DISTINCT session_key FROM state")
        keys = [row[0] for row in rows]
        await db.executemany(
            "UPDATE state SET owner = ? WHERE session_key = ?", [(owner_of(k), k) for k in keys]
        )
    await db.execute("CREATE INDEX IF NOT EXISTS state_owner ON state (owner)")


class SqliteSessions:
    def __init__(self, store: SqliteStore) -> None:
        self._store = store

    async def get(self, session_key: str, backend: str) -> dict[str, Any]:
        store = self._store
        rows = await store.db.execute_fetchall(
            "SELECT (SELECT value FROM state WHERE session_key = ? AND backend = ?),"
            " (SELECT salt FROM forgotten WHERE tag = ?)",
            (session_key, backend, _forgotten.tag(store.forget_secret, session_key)),
        )
        value, salt = rows[0]
        if value is not None:
            return json.loads(value)
        return {"salt": salt} if salt is not None else {}

    async def put(self, session_key: str, backend: str, state: Mapping[str, Any]) -> None:
        await self._store.db.execute(
            "INSERT INTO state (session_key, backend, value, updated, owner) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (session_key, backend) DO UPDATE"
            " SET value = excluded.value, updated = excluded.updated",
            (
                session_key,
                backend,
                json.dumps(dict(state)),
                self._store.clock(),
                owner_of(session_key),
            ),
        )

    async def count(self) -> int:
        rows = await self._store.db.execute_fetchall(
            "SELECT COUNT(DISTINCT session_key) FROM state"
        )
        return int(rows[0][0]) if rows else 0

    async def list(self, limit: int | None = None) -> list[SessionInfo]:
        rows = await self._store.db.execute_fetchall(
            "SELECT session_key, backend, updated, length(CAST(value AS BLOB)) FROM state"
            " ORDER BY updated DESC, session_key, backend LIMIT ?",
            (-1 if limit is None else limit,),
        )
        return [SessionInfo(key, backend, updated, size) for key, backend, updated, size in rows]

    async def forget(self, owners: Sequence[str]) -> list[str]:
        if not owners:
            return []
        store = self._store
        marks = ",".join("?" * len(owners))
        rows = await store.db.execute_fetchall(
            f"DELETE FROM state WHERE owner IN ({marks}) RETURNING session_key", list(owners)
        )
        keys = sorted({row[0] for row in rows})
        await store.db.executemany(
            "INSERT INTO forgotten (tag, salt) VALUES (?, ?)"
            " ON CONFLICT (tag) DO UPDATE SET salt = excluded.salt",
            [(_forgotten.tag(store.forget_secret, key), _forgotten.new_salt()) for key in keys],
        )
        return keys

    async def purge(self, now: float) -> int:
        cursor = await self._store.db.execute(
            "DELETE FROM state WHERE updated < ?", (now - self._store.session_ttl,)
        )
        return cursor.rowcount
