"""The embedded store: one SQLite file (WAL), or `:memory:` for tests.

One connection, shared by the store's parts (`journal`, `sessions`, `counters`), each in a module
of its own with its own tables. Every operation is one autocommitted statement: one round trip to
aiosqlite's thread. One process answers a file's pending messages: opened as their `owner` (the
daemon, the console), the store takes an advisory lock on `{file}.lock` holding its pid, so a
second daemon or console on the same state refuses to start instead of answering the first one's
pending messages again. Tools that only read or edit beside a running daemon open it unlocked.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable
from pathlib import Path

import aiosqlite

from ...errors import StoreLocked
from . import counters, journal, sessions


class SqliteStore:
    shared = False  # one process per file (the lock)

    def __init__(
        self, path: str, clock: Callable[[], float] = time.time, *, owner: bool = False
    ) -> None:
        self._path = path
        self.clock = clock
        self._owner = owner
        self._db: aiosqlite.Connection | None = None
        self._lock: int | None = None  # the lock file's descriptor while open
        self.journal = journal.SqliteJournal(self)
        self.sessions = sessions.SqliteSessions(self)
        self.counters = counters.SqliteCounters(self)

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError("store is not open")
        return self._db

    async def open(self) -> None:
        if self._path != ":memory:":
            Path(self._path).parent.mkdir(parents=True, exist_ok=True)
            if self._owner:
                self._lock = lock_file(f"{self._path}.lock", self._path)
        try:
            self._db = await aiosqlite.connect(self._path, isolation_level=None)  # autocommit
            await self._db.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode survives a process crash; only a power loss can drop the last
            # commits.
            await self._db.execute("PRAGMA synchronous=NORMAL")
            for schema in (journal.SCHEMA, sessions.SCHEMA, counters.SCHEMA):
                await self._db.executescript(schema)
            await self.journal.migrate()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None
        if self._lock is not None:
            os.close(self._lock)  # the kernel drops the lock with the descriptor (also on a crash)
            self._lock = None

    async def ping(self) -> None:
        await self.db.execute_fetchall("SELECT 1")


def lock_file(lock_path: str, owned: str) -> int:
    """Take the advisory lock on `lock_path` and write our pid into it; `StoreLocked` naming the
    holder's pid if another process has it. The descriptor is the lock: close it to release."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
        os.close(fd)
        raise StoreLocked(owned, holder) from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd
