"""The SQLite store's connection (`bridge.store.sqlite._batched`): statements handed over while
the thread is busy share one commit, each caller hears back only once it is committed, and one
failing statement costs the others nothing."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from bridge.store.sqlite._batched import BatchedConnection


@pytest.fixture
async def db(tmp_path):
    connection = await BatchedConnection.connect(str(tmp_path / "b.sqlite3"))
    await connection.execute("PRAGMA journal_mode=WAL")
    await connection.executescript("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER);")
    yield connection
    await connection.close()


async def test_writes_at_once_share_commits_and_are_committed_when_awaited(db, tmp_path):
    async def write(n: int) -> None:
        done = await db.execute("INSERT INTO t (k, v) VALUES (?, ?)", (f"k{n}", n))
        assert done.rowcount == 1
        # Committed before the caller goes on: another connection reads it at once.
        other = sqlite3.connect(tmp_path / "b.sqlite3")
        try:
            assert other.execute("SELECT v FROM t WHERE k = ?", (f"k{n}",)).fetchone() == (n,)
        finally:
            other.close()

    await asyncio.gather(*(write(n) for n in range(200)))
    assert 0 < db.batches < 200  # many statements, fewer commits
    assert await db.execute_fetchall("SELECT count(*) FROM t") == [(200,)]


async def test_a_failing_statement_fails_alone(db):
    await db.execute("INSERT INTO t (k, v) VALUES ('taken', 0)")
    results = await asyncio.gather(
        *(db.execute("INSERT INTO t (k, v) VALUES (?, ?)", (f"a{n}", n)) for n in range(20)),
        db.execute("INSERT INTO t (k, v) VALUES ('taken', 1)"),  # the primary key is taken
        db.execute("SELECT nonsense FROM nowhere"),
        *(db.execute("INSERT INTO t (k, v) VALUES (?, ?)", (f"b{n}", n)) for n in range(20)),
        return_exceptions=True,
    )
    assert isinstance(results[20], sqlite3.IntegrityError)
    assert isinstance(results[21], sqlite3.OperationalError)
    assert all(not isinstance(r, BaseException) for r in results[:20] + results[22:])
    rows = await db.execute_fetchall("SELECT k, v FROM t WHERE k = 'taken'")
    assert rows == [("taken", 0)]
    assert await db.execute_fetchall("SELECT count(*) FROM t") == [(41,)]


async def test_a_cancelled_caller_leaves_the_rest_answered(db):
    tasks = [
        asyncio.create_task(db.execute("INSERT INTO t (k, v) VALUES (?, ?)", (f"c{n}", n)))
        for n in range(50)
    ]
    tasks[10].cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert all(t.result().rowcount == 1 for n, t in enumerate(tasks) if n != 10)
    assert await db.execute_fetchall("SELECT v FROM t WHERE k = 'c49'") == [(49,)]


async def test_a_closed_connection_refuses_work(tmp_path):
    connection = await BatchedConnection.connect(str(tmp_path / "c.sqlite3"))
    await connection.close()
    await connection.close()  # twice is harmless
    with pytest.raises(sqlite3.ProgrammingError):
        await connection.execute("SELECT 1")
