"""Session state in SQLite: one row per (session, backend), its JSON value and last update."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from . import SqliteStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS state (
    session_key TEXT NOT NULL,
    backend TEXT NOT NULL,
    value TEXT NOT NULL,
    updated REAL NOT NULL,
    PRIMARY KEY (session_key, backend)
);
"""


class SqliteSessions:
    def __init__(self, store: SqliteStore) -> None:
        self._store = store

    async def get(self, session_key: str, backend: str) -> dict[str, Any]:
        rows = await self._store.db.execute_fetchall(
            "SELECT value FROM state WHERE session_key = ? AND backend = ?", (session_key, backend)
        )
        return json.loads(rows[0][0]) if rows else {}

    async def put(self, session_key: str, backend: str, state: Mapping[str, Any]) -> None:
        await self._store.db.execute(
            "INSERT INTO state (session_key, backend, value, updated) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (session_key, backend) DO UPDATE"
            " SET value = excluded.value, updated = excluded.updated",
            (session_key, backend, json.dumps(dict(state)), self._store.clock()),
        )

    async def count(self) -> int:
        rows = await self._store.db.execute_fetchall(
            "SELECT COUNT(DISTINCT session_key) FROM state"
        )
        return int(rows[0][0]) if rows else 0
