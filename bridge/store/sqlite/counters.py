"""Rate-limit counters in SQLite: one row per key, counting within its current fixed window."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from . import SqliteStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS rates (
    key TEXT PRIMARY KEY,
    window_start REAL NOT NULL,
    count INTEGER NOT NULL
);
"""


class SqliteCounters:
    def __init__(self, store: SqliteStore) -> None:
        self._store = store

    async def hit(self, key: str, window: float, now: float) -> int:
        start = now - now % window
        # One row per key: a new window starts the count again (the CASE sees the old row).
        rows = await self._store.db.execute_fetchall(
            "INSERT INTO rates (key, window_start, count) VALUES (?, ?, 1)"
            " ON CONFLICT (key) DO UPDATE SET"
            " count = CASE WHEN rates.window_start = excluded.window_start"
            " THEN rates.count + 1 ELSE 1 END,"
            " window_start = excluded.window_start"
            " RETURNING count",
            (key, start),
        )
        return int(rows[0][0])
