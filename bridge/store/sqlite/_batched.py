"""The SQLite connection on a thread of its own, with group commit: the statements the event loop
hands over while the thread is busy are run next as one transaction, and every caller hears back
only after that transaction's COMMIT, so a write is as durable as it would be alone before the
step that depends on it goes on.

One statement per autocommitted transaction cost a WAL commit each (three to five per answer),
and aiosqlite's thread woke the loop once per statement; under load (tens of conversations at
once) the statements of many messages now share one commit and one wake-up. A statement that
fails rolls its batch back and the batch is run again one statement at a time, so each caller
gets its own outcome, as if it had been alone. PRAGMAs and scripts run alone, outside any
transaction (several of them cannot run inside one).
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from queue import SimpleQueue
from typing import Any

Params = Sequence[Any] | dict[str, Any]
Run = Callable[[sqlite3.Connection], Any]


@dataclass(frozen=True, slots=True)
class Done:
    """What `execute` reports of a write."""

    rowcount: int
    lastrowid: int | None


@dataclass(slots=True)
class _Op:
    run: Run
    future: asyncio.Future[Any] | None
    alone: bool  # outside any transaction (a PRAGMA, a script, closing)


_STOP = object()


class BatchedConnection:
    """`await BatchedConnection.connect(path)`; then `execute`, `execute_fetchall`,
    `executemany`, `executescript` and `close`, each a coroutine."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._queue: SimpleQueue[_Op | object] = SimpleQueue()
        self._thread = threading.Thread(target=self._work, name="sqlite-store", daemon=True)
        self._db: sqlite3.Connection | None = None
        self._closed = False
        self.batches = 0  # transactions committed (for tests and the benchmark)

    @classmethod
    async def connect(cls, path: str) -> BatchedConnection:
        self = cls(asyncio.get_running_loop())
        self._thread.start()
        try:
            await self._submit(self._open(path), alone=True)
        except BaseException:
            self._queue.put(_STOP)
            raise
        return self

    def _open(self, path: str) -> Run:
        def run(_: Any) -> None:
            # Autocommit: the batches BEGIN and COMMIT themselves.
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)

        return run

    # ------------------------------------------------------------------ the event loop's side

    async def execute(self, sql: str, params: Params = ()) -> Done:
        def run(db: sqlite3.Connection) -> Done:
            cursor = db.execute(sql, params)
            return Done(cursor.rowcount, cursor.lastrowid)

        return await self._submit(run, alone=_alone(sql))

    async def execute_fetchall(self, sql: str, params: Params = ()) -> list[Any]:
        def run(db: sqlite3.Connection) -> list[Any]:
            return db.execute(sql, params).fetchall()

        return await self._submit(run, alone=_alone(sql))

    async def executemany(self, sql: str, rows: Iterable[Params]) -> Done:
        rows = list(rows)  # read here: an iterator must not be consumed twice on a retry

        def run(db: sqlite3.Connection) -> Done:
            cursor = db.executemany(sql, rows)
            return Done(cursor.rowcount, cursor.lastrowid)

        return await self._submit(run, alone=False)

    async def executescript(self, script: str) -> None:
        await self._submit(lambda db: db.executescript(script), alone=True)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True

        def run(db: sqlite3.Connection | None) -> None:
            if db is not None:
                db.close()

        try:
            await self._submit(run, alone=True, closing=True)
        finally:
            self._queue.put(_STOP)

    def _submit(self, run: Run, *, alone: bool, closing: bool = False) -> asyncio.Future[Any]:
        if self._closed and not closing:
            raise sqlite3.ProgrammingError("the store's connection is closed")
        future = self._loop.create_future()
        self._queue.put(_Op(run, future, alone))
        return future

    # ---------------------------------------------------------------------- the thread's side

    def _work(self) -> None:
        queue = self._queue
        stop = False
        while not stop:
            first = queue.get()
            ops: list[_Op] = []
            item: _Op | object = first
            while True:
                if item is _STOP:
                    stop = True
                    break
                assert isinstance(item, _Op)
                ops.append(item)
                if queue.empty():
                    break
                item = queue.get()
            if ops:
                self._report(self._run(ops))

    def _run(self, ops: list[_Op]) -> list[tuple[_Op, bool, Any]]:
        """Each op with (succeeded, result or exception), in order: runs of ordinary ops as one
        transaction each, the ops that must be alone between them."""
        outcomes: list[tuple[_Op, bool, Any]] = []
        group: list[_Op] = []
        for op in ops:
            if op.alone:
                outcomes += self._together(group)
                group = []
                outcomes.append(self._one(op))
            else:
                group.append(op)
        return outcomes + self._together(group)

    def _together(self, ops: list[_Op]) -> list[tuple[_Op, bool, Any]]:
        db = self._db
        if len(ops) < 2 or db is None:
            return [self._one(op) for op in ops]
        results = []
        try:
            db.execute("BEGIN IMMEDIATE")
            for op in ops:
                results.append(op.run(db))
            db.execute("COMMIT")
        except Exception:
            if db.in_transaction:
                db.execute("ROLLBACK")
            # Nothing of the batch was kept: each runs again alone and gets its own outcome.
            return [self._one(op) for op in ops]
        self.batches += 1
        return [(op, True, result) for op, result in zip(ops, results, strict=True)]

    def _one(self, op: _Op) -> tuple[_Op, bool, Any]:
        try:
            return op, True, op.run(self._db)
        except BaseException as exc:
            return op, False, exc

    def _report(self, outcomes: list[tuple[_Op, bool, Any]]) -> None:
        try:
            self._loop.call_soon_threadsafe(_settle, outcomes)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass


def _settle(outcomes: list[tuple[_Op, bool, Any]]) -> None:
    for op, ok, value in outcomes:
        future = op.future
        if future is None or future.done():  # its caller was cancelled
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


def _alone(sql: str) -> bool:
    return sql.lstrip()[:6].upper() == "PRAGMA"
