"""Counters in SQLite: rate-limit windows (one row per key, counting within its current fixed
window) and daily token counts (one row per subject and scope, holding the current day's count)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ._batched import BatchedConnection

if TYPE_CHECKING:
    from . import SqliteStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS rates (
    key TEXT PRIMARY KEY,
    window_start REAL NOT NULL,
    count INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
    subject TEXT NOT NULL,
    scope TEXT NOT NULL,
    day TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (subject, scope)
);
CREATE INDEX IF NOT EXISTS tokens_day ON tokens (day);
"""


async def migrate(db: BatchedConnection) -> None:
    """A file from before retention gets the window end that the purge needs (0: purge now)."""
    columns = {row[1] for row in await db.execute_fetchall("PRAGMA table_info(rates)")}
    if "expires" not in columns:
        await db.execute("ALTER TABLE rates ADD COLUMN expires REAL NOT NULL DEFAULT 0")
    await db.execute("CREATE INDEX IF NOT EXISTS rates_expires ON rates (expires)")


class SqliteCounters:
    def __init__(self, store: SqliteStore) -> None:
        self._store = store

    async def hit(self, key: str, window: float, now: float) -> int:
        start = now - now % window
        # One row per key: a new window starts the count again (the CASE sees the old row).
        rows = await self._store.db.execute_fetchall(
            "INSERT INTO rates (key, window_start, count, expires) VALUES (?, ?, 1, ?)"
            " ON CONFLICT (key) DO UPDATE SET"
            " count = CASE WHEN rates.window_start = excluded.window_start"
            " THEN rates.count + 1 ELSE 1 END,"
            " window_start = excluded.window_start, expires = excluded.expires"
            " RETURNING count",
            (key, start, start + window),
        )
        return int(rows[0][0])

    async def add(self, day: str, pairs: Sequence[tuple[str, str]], amount: int) -> None:
        if not pairs:
            return
        values = ",".join("(?, ?, ?, ?)" for _ in pairs)
        params = [v for subject, scope in pairs for v in (subject, scope, day, amount)]
        await self._store.db.execute(
            f"INSERT INTO tokens (subject, scope, day, count) VALUES {values}"
            " ON CONFLICT (subject, scope) DO UPDATE SET"
            " count = CASE WHEN tokens.day = excluded.day"
            " THEN tokens.count + excluded.count ELSE excluded.count END,"
            " day = excluded.day",
            params,
        )

    async def tokens(self, day: str, subjects: Sequence[str]) -> dict[str, dict[str, int]]:
        found: dict[str, dict[str, int]] = {subject: {} for subject in subjects}
        if not subjects:
            return found
        marks = ",".join("?" * len(subjects))
        rows = await self._store.db.execute_fetchall(
            f"SELECT subject, scope, count FROM tokens WHERE day = ? AND subject IN ({marks})",
            [day, *subjects],
        )
        for subject, scope, count in rows:
            found[subject][scope] = int(count)
        return found

    async def forget(self, subjects: Sequence[str]) -> int:
        if not subjects:
            return 0
        db = self._store.db
        marks = ",".join("?" * len(subjects))
        rates = await db.execute(f"DELETE FROM rates WHERE key IN ({marks})", list(subjects))
        tokens = await db.execute(f"DELETE FROM tokens WHERE subject IN ({marks})", list(subjects))
        return rates.rowcount + tokens.rowcount

    async def purge(self, now: float, day: str) -> int:
        db = self._store.db
        rates = await db.execute("DELETE FROM rates WHERE expires < ?", (now,))
        tokens = await db.execute("DELETE FROM tokens WHERE day < ?", (day,))
        return rates.rowcount + tokens.rowcount
