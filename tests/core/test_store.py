"""The store contract, run against SQLite and a real Redis: dedup with TTL, the journal's stages
through a restart, session state, rate counters. Ownership (the SQLite lock, Redis leases and
take-over) is in test_ownership.py."""

from __future__ import annotations

import json
import os
import sqlite3
import uuid

import pytest

from bridge.errors import NotOwner
from bridge.journal import Outcome, Reply, SessionWrite, Stage
from bridge.store.redis import RedisStore
from bridge.store.sqlite import SqliteStore

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def redis_or_skip(store: RedisStore) -> None:
    try:
        await store.open()
    except OSError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no Redis at {REDIS_URL}: {exc}")


async def drop_prefix(store: RedisStore) -> None:
    keys = await store.redis.keys(f"{store.prefix}:*")
    if keys:
        await store.redis.delete(*keys)


class Stores:
    """Opens stores of one kind on one state (a file, or a Redis prefix); `restart()` closes the
    current one cleanly and opens a new process's store on the same state."""

    def __init__(self, kind: str, tmp_path) -> None:
        self.kind = kind
        self.path = str(tmp_path / "s.sqlite3")
        self.prefix = f"test-{uuid.uuid4().hex}"
        self.current = None

    async def open(self):
        if self.kind == "sqlite":
            store = SqliteStore(self.path)
            await store.open()
        else:
            store = RedisStore(REDIS_URL, prefix=self.prefix)
            await redis_or_skip(store)
        self.current = store
        return store

    async def restart(self):
        await self.current.close()
        return await self.open()

    async def close(self) -> None:
        if self.current is None:
            return
        if isinstance(self.current, RedisStore) and self.current._redis is not None:
            await drop_prefix(self.current)
        await self.current.close()


@pytest.fixture(params=["sqlite", "redis"])
async def stores(request, tmp_path):
    found = Stores(request.param, tmp_path)
    yield found
    await found.close()


@pytest.fixture
async def store(stores):
    return await stores.open()


def dm(n: int, platform: str = "telegram") -> dict:
    return {"platform": platform, "chat_id": str(n), "text": f"question {n}"}


async def test_accept_is_once_per_event(store):
    assert await store.journal.accept("tg:1", dm(1), ttl=60) is True
    assert await store.journal.accept("tg:1", dm(1), ttl=60) is False
    assert await store.journal.accept("tg:2", dm(2), ttl=60) is True


async def test_pending_after_a_restart_oldest_first_without_the_completed(stores):
    store = await stores.open()
    for n in range(3):
        await store.journal.accept(f"e{n}", dm(n), ttl=60)
    # What this process accepted it already has in hand: not handed out again.
    assert await store.journal.pending() == []
    await store.journal.complete("e1", Outcome.ANSWERED)
    store = await stores.restart()
    entries = await store.journal.pending()
    assert [e.event_id for e in entries] == ["e0", "e2"]
    assert [e.payload["text"] for e in entries] == ["question 0", "question 2"]
    assert all(e.stage is Stage.ACCEPTED and e.asks == 0 for e in entries)
    assert await store.journal.pending() == []  # handed out once


async def test_only_the_platforms_asked_for_are_recovered(stores):
    store = await stores.open()
    await store.journal.accept("tg", dm(1, "telegram"), ttl=60)
    await store.journal.accept("cl", dm(2, "console"), ttl=60)
    store = await stores.restart()
    assert [e.event_id for e in await store.journal.pending(["console"])] == ["cl"]
    store = await stores.restart()  # the Telegram one stayed pending, untouched
    assert [e.event_id for e in await store.journal.pending(["telegram"])] == ["tg"]


async def test_every_stage_survives_a_restart(stores):
    store = await stores.open()
    journal = store.journal
    await journal.accept("e", dm(7), ttl=60)
    assert await journal.asked("e", "wx:dm:tg.7", "main") == (1, {})
    reply = Reply(("part one", "part two", "part three"), "answer")
    session = SessionWrite("wx:dm:tg.7", "main", {"history": [1, 2]})
    marked = await journal.answered("e", reply, session)
    assert marked is not None  # part 0 is "sending" from now
    next_mark = await journal.sent("e", 0, "m-100")
    assert next_mark >= marked

    store = await stores.restart()
    [entry] = await store.journal.pending()
    assert entry.stage is Stage.ANSWERED and entry.asks == 1
    assert entry.reply == reply and entry.session == session
    assert entry.sent == ("m-100",) and entry.next_part == 1
    assert entry.sending == pytest.approx(next_mark)  # part 1 may be on the platform already

    await store.journal.sent("e", 1, "m-101,m-102")  # Telegram: one part, two messages
    await store.journal.sending("e", 2, None)  # the next attempt provably posted nothing
    store = await stores.restart()
    [entry] = await store.journal.pending()
    assert entry.sent == ("m-100", "m-101,m-102") and entry.sending is None


async def test_asks_are_counted_across_restarts_and_read_the_session_state(stores):
    store = await stores.open()
    await store.sessions.put("wx:dm:tg.1", "main", {"thread_id": "t1"})
    await store.journal.accept("e", dm(1), ttl=60)
    await store.journal.asked("e", "wx:dm:tg.1", "main")
    store = await stores.restart()
    [entry] = await store.journal.pending()
    assert entry.stage is Stage.ASKED and entry.asks == 1
    assert await store.journal.asked("e", "wx:dm:tg.1", "main") == (2, {"thread_id": "t1"})
    assert await store.journal.asked("e", "wx:dm:tg.1", "other") == (3, {})


async def test_writes_out_of_order_are_refused(store):
    await store.journal.accept("e", dm(1), ttl=60)
    await store.journal.answered("e", Reply(("a", "b")), None)
    with pytest.raises(NotOwner):
        await store.journal.sent("e", 1, "m")  # part 0 is not recorded yet
    await store.journal.sent("e", 0, "m0")
    with pytest.raises(NotOwner):
        await store.journal.sent("e", 0, "again")  # recorded once only
    with pytest.raises(NotOwner):
        await store.journal.asked("never-accepted", "k", "main")


async def test_completion_keeps_the_id_and_outcome_and_drops_the_text(stores):
    store = await stores.open()
    await store.journal.accept("e", dm(1), ttl=60)
    await store.journal.answered("e", Reply(("secret answer",)), None)
    await store.journal.complete("e", Outcome.UNDELIVERABLE)
    assert await store.journal.outcome("e") == "undeliverable"
    assert await store.journal.accept("e", dm(1), ttl=60) is False  # still a duplicate
    store = await stores.restart()
    assert await store.journal.pending() == []
    if isinstance(store, SqliteStore):
        rows = await store.db.execute_fetchall("SELECT * FROM events")
        assert "secret" not in json.dumps(rows) and "question" not in json.dumps(rows)
    else:
        values = [await store.redis.type(k) for k in await store.redis.keys(f"{store.prefix}:*")]
        assert "hash" not in values  # no entry left, only the seen id


async def test_state_per_session_and_backend(store):
    await store.sessions.put("wx:dm:tg.1", "main", {"thread_id": "t1"})
    await store.sessions.put("wx:dm:tg.2", "main", {"thread_id": "t2"})
    await store.sessions.put("wx:dm:tg.1", "other", {"history": [1]})
    assert await store.sessions.get("wx:dm:tg.1", "main") == {"thread_id": "t1"}
    assert await store.sessions.get("wx:dm:tg.2", "main") == {"thread_id": "t2"}
    assert await store.sessions.get("wx:dm:tg.3", "main") == {}
    assert await store.sessions.count() == 2


async def test_hits_count_per_key_within_a_window(store):
    assert [await store.counters.hit("tg.42", 60, 120.0) for _ in range(3)] == [1, 2, 3]
    assert await store.counters.hit("tg.43", 60, 130.0) == 1  # another person's count
    assert await store.counters.hit("tg.42", 60, 179.9) == 4  # same window [120, 180)
    assert await store.counters.hit("tg.42", 60, 180.0) == 1  # a new window starts over


async def test_sqlite_seen_ids_expire(tmp_path):
    clock = Clock()
    store = SqliteStore(str(tmp_path / "s.sqlite3"), clock=clock)
    await store.open()
    assert await store.journal.accept("x", dm(1), ttl=10)
    clock.now += 5
    assert not await store.journal.accept("x", dm(1), ttl=10)
    clock.now += 6
    assert await store.journal.accept("x", dm(1), ttl=10)  # remembered only for its TTL
    await store.close()


async def test_sqlite_survives_reopen(tmp_path):
    path = str(tmp_path / "s.sqlite3")
    first = SqliteStore(path)
    await first.open()
    await first.journal.accept("e", {"text": "kept"}, ttl=60)
    await first.sessions.put("k", "b", {"v": 1})
    await first.close()
    second = SqliteStore(path)
    await second.open()
    assert [p.payload["text"] for p in await second.journal.pending()] == ["kept"]
    assert await second.sessions.get("k", "b") == {"v": 1}
    assert not await second.journal.accept("e", {}, ttl=60)
    await second.close()


async def test_a_state_file_from_before_the_journal_keeps_its_pending_messages(tmp_path):
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as db:  # the schema and a pending row as the previous version left
        db.executescript(
            "CREATE TABLE events (event_id TEXT PRIMARY KEY, expires REAL NOT NULL,"
            " accepted REAL NOT NULL, payload TEXT);"
        )
        db.execute("INSERT INTO events VALUES ('old', 9e9, 1.0, ?)", (json.dumps(dm(3)),))
    store = SqliteStore(str(path))
    await store.open()
    [entry] = await store.journal.pending()
    assert entry.event_id == "old" and entry.stage is Stage.ACCEPTED
    assert (await store.journal.asked("old", "k", "main"))[0] == 1
    await store.close()
