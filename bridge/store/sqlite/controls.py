"""Admins' decisions in SQLite: one row per person who is blocked or has a personal budget."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from .. import Control

if TYPE_CHECKING:
    from . import SqliteStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS controls (
    subject TEXT PRIMARY KEY,
    blocked INTEGER NOT NULL,
    budget INTEGER
);
"""


class SqliteControls:
    def __init__(self, store: SqliteStore) -> None:
        self._store = store

    async def get(self, subject: str) -> Control:
        rows = await self._store.db.execute_fetchall(
            "SELECT blocked, budget FROM controls WHERE subject = ?", (subject,)
        )
        return Control(bool(rows[0][0]), rows[0][1]) if rows else Control()

    async def set(self, subject: str, control: Control) -> None:
        db = self._store.db
        if control == Control():
            await db.execute("DELETE FROM controls WHERE subject = ?", (subject,))
            return
        await db.execute(
            "INSERT INTO controls (subject, blocked, budget) VALUES (?, ?, ?)"
            " ON CONFLICT (subject) DO UPDATE SET blocked = excluded.blocked,"
            " budget = excluded.budget",
            (subject, int(control.blocked), control.budget),
        )

    async def forget(self, subjects: Sequence[str]) -> int:
        if not subjects:
            return 0
        marks = ",".join("?" * len(subjects))
        cursor = await self._store.db.execute(
            f"DELETE FROM controls WHERE subject IN ({marks})", list(subjects)
        )
        return cursor.rowcount
