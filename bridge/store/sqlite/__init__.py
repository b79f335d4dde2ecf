"""The embedded store: one SQLite file (WAL), or `:memory:` for tests.

One connection, shared by the store's parts (`journal`, `sessions`, `counters`, `controls`), each
in a module of its own with its own tables. Every operation is one statement where it can be: one
round trip to the connection's thread, which commits the statements handed to it meanwhile
together (`_batched`: group commit). A new file is created with incremental
auto-vacuum, so that `compact` after a purge shrinks it. One process answers a file's pending
messages: opened as their `owner` (the daemon, the console), the store takes an advisory lock on
`{file}.lock` holding its pid, so a second daemon or console on the same state refuses to start
instead of answering the first one's pending messages again. Tools that only read or edit beside
a running daemon open it unlocked.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from ...errors import StoreLocked, StoreUnavailable
from .. import _forgotten
from . import controls, counters, journal, sessions
from ._batched import BatchedConnection

DEFAULT_SESSION_TTL = 30 * 86400.0


class SqliteStore:
    shared = False  # one process per file (the lock)

    def __init__(
        self,
        path: str,
        clock: Callable[[], float] = time.time,
        *,
        owner: bool = False,
        session_ttl: float = DEFAULT_SESSION_TTL,
    ) -> None:
        self._path = path
        self.clock = clock
        self._owner = owner
        self.session_ttl = session_ttl
        self.forget_secret = ""  # read at open (see _forgotten)
        self._db: BatchedConnection | None = None
        self._lock: int | None = None  # the lock file's descriptor while open
        self.journal = journal.SqliteJournal(self)
        self.sessions = sessions.SqliteSessions(self)
        self.counters = counters.SqliteCounters(self)
        self.controls = controls.SqliteControls(self)

    @property
    def db(self) -> BatchedConnection:
        if self._db is None:
            raise RuntimeError("store is not open")
        return self._db

    async def open(self) -> None:
        if self._path != ":memory:":
            # Tried first in plain sqlite3, to name what is wrong with the directory or file.
            await asyncio.to_thread(_try_open, self._path)
            if self._owner:
                self._lock = lock_file(f"{self._path}.lock", self._path)
        try:
            self._db = db = await BatchedConnection.connect(self._path)
            await self._prepare(db)
        except sqlite3.Error as exc:  # a read-only file, a full disk, not a database
            await self.close()
            raise StoreUnavailable(f"cannot use the state file {self._path}: {exc}") from None
        except BaseException:
            await self.close()
            raise

    async def _prepare(self, db: BatchedConnection) -> None:
        # Only takes effect on a new file (before its first table): an older file keeps its mode.
        await db.execute("PRAGMA auto_vacuum=INCREMENTAL")
        await db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode survives a process crash; only a power loss can drop the last commits.
        await db.execute("PRAGMA synchronous=NORMAL")
        for schema in (journal.SCHEMA, sessions.SCHEMA, counters.SCHEMA, controls.SCHEMA):
            await db.executescript(schema)
        await self.journal.migrate()
        await sessions.migrate(db)
        await counters.migrate(db)
        await db.execute(
            "INSERT OR IGNORE INTO meta (name, value) VALUES ('forget_secret', ?)",
            (_forgotten.new_secret(),),
        )
        rows = await db.execute_fetchall("SELECT value FROM meta WHERE name = 'forget_secret'")
        self.forget_secret = rows[0][0]

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None
        if self._lock is not None:
            os.close(self._lock)  # the kernel drops the lock with the descriptor (also on a crash)
            self._lock = None

    async def ping(self) -> None:
        await self.db.execute_fetchall("SELECT 1")

    async def compact(self) -> None:
        # executescript steps the statement to the end; execute() would free one page per call.
        await self.db.executescript("PRAGMA incremental_vacuum;")
        # In WAL mode the file shrinks once the log is written back.
        await self.db.execute_fetchall("PRAGMA wal_checkpoint(TRUNCATE)")


def _try_open(path: str) -> None:
    """Create the directory and open the file once, or raise `StoreUnavailable` naming it."""
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        sqlite3.connect(path).close()
    except OSError as exc:
        raise StoreUnavailable(
            f"cannot create the state directory {Path(path).parent}: {exc.strerror}"
        ) from None
    except sqlite3.Error as exc:
        raise StoreUnavailable(f"cannot open the state file {path}: {exc}") from None


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
