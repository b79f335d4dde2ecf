"""The store contract, run against SQLite, a real Redis and a real Redis Cluster (three masters:
every script and transaction must stay in one hash slot): dedup with TTL, the journal's stages
through a restart, session state, rate counters. Ownership (the SQLite lock, Redis leases and
take-over) is in test_ownership.py."""

from __future__ import annotations

import json
import sqlite3
import uuid

import pytest

from bridge.errors import NotOwner
from bridge.journal import Outcome, Reply, SessionWrite, Stage
from bridge.store.redis import RedisStore
from bridge.store.sqlite import SqliteStore
from tests.conftest import REDIS_URL, redis_prefix


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Stores:
    """Opens stores of one kind on one state (a file, or a Redis prefix); `restart()` closes the
    current one cleanly and opens a new process's store on the same state."""

    def __init__(self, kind: str, tmp_path, prefix: str = "", url: str = REDIS_URL) -> None:
        self.kind = kind
        self.url = url
        self.path = str(tmp_path / "s.sqlite3")
        self.prefix = prefix
        self.current = None

    async def open(self):
        if self.kind == "sqlite":
            store = SqliteStore(self.path)
        else:
            store = RedisStore(self.url, prefix=self.prefix, cluster=self.kind == "cluster")
        await store.open()
        self.current = store
        return store

    async def restart(self):
        await self.current.close()
        return await self.open()

    async def close(self) -> None:
        if self.current is not None:
            await self.current.close()


@pytest.fixture(params=["sqlite", "redis", "cluster"])
async def stores(request, tmp_path):
    if request.param in ("sqlite", "cluster"):
        # A cluster of the session's own: a fresh prefix is all a test needs.
        url = request.getfixturevalue("redis_cluster").url if request.param == "cluster" else ""
        found = Stores(request.param, tmp_path, f"test-{uuid.uuid4().hex}", url)
        yield found
        await found.close()
        return
    async with redis_prefix() as prefix:  # every key under it is deleted afterwards
        found = Stores("redis", tmp_path, prefix)
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
        keys = await store.redis.keys(f"{store.prefix}:*")
        assert not [k for k in keys if ":entry:" in k]  # no entry left, only the seen id
        texts = [await store.redis.dump(k) for k in keys]
        assert not any(b"secret answer" in t or b"question 1" in t for t in texts if t)


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


async def test_two_bots_on_one_redis_database_never_share_state(openai_fake):
    """Two bridges, each with its own `bridge.store.prefix`, see the same event id (one Slack
    event delivered to two apps): each answers it, and a /reset in one leaves the other alone."""
    from bridge.app import Bridge
    from tests.conftest import RecordingConsole, make_config

    async with redis_prefix() as first, redis_prefix() as second:
        bridges, consoles = [], []
        try:
            for prefix in (first, second):
                console = RecordingConsole(user="ann")
                backend = {"type": "openai", "base_url": openai_fake.base_url, "session": "body"}
                config = make_config({"backends": {"main": backend}, "bridge": {
                    "store": {"type": "redis", "url": REDIS_URL, "prefix": prefix}}})  # fmt: skip
                bridge = Bridge(config, [console])
                await bridge.start()
                bridges.append(bridge)
                consoles.append(console)
            a, b = consoles
            await a.say("hello", event_id="ev-1")
            await b.say("hello", event_id="ev-1")  # the same id: not a duplicate for the other
            assert await a.replies(1) == ["echo: hello"] and await b.replies(1) == ["echo: hello"]
            await a.say("/reset", event_id="ev-2")
            await a.replies(2)
            await a.say("again", event_id="ev-3")
            await b.say("again", event_id="ev-3")
            await a.replies(3)
            await b.replies(2)
            sessions = [c.json["session_id"] for c in openai_fake.calls]
            assert sessions.count("wx:dm:cl.ann#2") == 1  # only bot a's session was reset
            redis = bridges[0].store.redis  # type: ignore[attr-defined]
            for prefix in (first, second):
                assert await redis.keys(f"{prefix}:*")
            assert not await redis.keys("botbridge:*seen*ev-1*")  # nothing under the default
        finally:
            for bridge in bridges:
                await bridge.stop()


# ----------------------------------------------------------------------------- operators' parts


async def test_token_counts_per_subject_and_scope_start_again_each_day(store):
    pairs = [("tg.42", "*"), ("tg.42", "main"), ("all", "*")]
    await store.counters.add("2026-03-01", pairs, 100)
    await store.counters.add("2026-03-01", pairs[:1], 20)
    assert await store.counters.tokens("2026-03-01", ["tg.42", "all", "tg.43"]) == {
        "tg.42": {"*": 120, "main": 100},
        "all": {"*": 100},
        "tg.43": {},
    }
    await store.counters.add("2026-03-02", pairs[:1], 5)  # a new day
    assert (await store.counters.tokens("2026-03-02", ["tg.42"]))["tg.42"] == {"*": 5}


async def test_forgetting_counters_deletes_rates_and_tokens_of_those_subjects_only(store):
    await store.counters.hit("tg.42", 60, 120.0)
    await store.counters.hit("tg.43", 60, 120.0)
    await store.counters.add("2026-03-01", [("tg.42", "*"), ("tg.43", "*")], 7)
    assert await store.counters.forget(["tg.42"]) == 2
    assert await store.counters.hit("tg.42", 60, 121.0) == 1  # counted from zero again
    assert await store.counters.hit("tg.43", 60, 121.0) == 2
    counts = await store.counters.tokens("2026-03-01", ["tg.42", "tg.43"])
    assert counts == {"tg.42": {}, "tg.43": {"*": 7}}


async def test_forgetting_sessions_by_owner_leaves_a_salt_and_nothing_else(store):
    await store.sessions.put("wx:dm:tg.42", "main", {"history": ["secret"], "generation": 2})
    await store.sessions.put("wx:group:tg.-100:user:tg.42", "main", {"thread_id": "t1"})
    await store.sessions.put("wx:group:tg.-100:user:tg.42", "other", {"thread_id": "t2"})
    await store.sessions.put("wx:group:tg.-100:user:tg.43", "main", {"thread_id": "t3"})
    deleted = await store.sessions.forget(["tg.42"])
    assert deleted == ["wx:dm:tg.42", "wx:group:tg.-100:user:tg.42"]
    first = await store.sessions.get("wx:dm:tg.42", "main")
    assert set(first) == {"salt"} and first["salt"].startswith("f-")
    assert set(await store.sessions.get("wx:group:tg.-100:user:tg.42", "other")) == {"salt"}
    assert await store.sessions.get("wx:group:tg.-100:user:tg.43", "main") == {"thread_id": "t3"}
    assert await store.sessions.count() == 1
    await store.sessions.put("wx:dm:tg.42", "main", {**first, "history": []})
    await store.sessions.forget(["tg.42"])
    again = await store.sessions.get("wx:dm:tg.42", "main")
    assert again["salt"] != first["salt"]  # every forget: an id never used before


async def test_sessions_are_listed_newest_first_without_their_state(store):
    await store.sessions.put("wx:dm:tg.1", "main", {"history": ["hello"]})
    await store.sessions.put("wx:dm:tg.2", "main", {"thread_id": "t"})
    rows = await store.sessions.list()
    assert {(r.key, r.backend) for r in rows} == {("wx:dm:tg.1", "main"), ("wx:dm:tg.2", "main")}
    assert {r.key: r.size for r in rows}["wx:dm:tg.1"] == len('{"history": ["hello"]}')
    assert all(r.updated > 0 for r in rows)
    assert len(await store.sessions.list(limit=1)) == 1


async def test_controls_are_kept_per_person_and_the_default_is_no_row(store):
    from bridge.store import Control

    assert await store.controls.get("tg.42") == Control()
    await store.controls.set("tg.42", Control(blocked=True))
    await store.controls.set("person:ann", Control(budget=500))
    assert await store.controls.get("tg.42") == Control(blocked=True)
    assert await store.controls.get("person:ann") == Control(budget=500)
    await store.controls.set("tg.42", Control())
    assert await store.controls.get("tg.42") == Control()
    assert await store.controls.forget(["person:ann", "tg.42"]) == 1


async def test_forgetting_pending_text_keeps_the_asking_message_and_later_ones(stores):
    def message(sender: str, text: str) -> dict:
        return {"platform": "telegram", "workspace": None, "sender_id": sender, "text": text}

    store = await stores.open()
    await store.journal.accept("e1", message("42", "my secret"), ttl=60)
    await store.journal.accept("e2", message("43", "someone else"), ttl=60)
    await store.journal.accept("e3", message("42", "/forget"), ttl=60)
    await store.journal.accept("e4", message("42", "after the forget"), ttl=60)
    assert await store.journal.forget([("telegram", None, "42")], keep="e3") == 1
    store = await stores.restart()  # what a restart finds pending
    texts = [entry.payload["text"] for entry in await store.journal.pending()]
    assert texts == ["someone else", "/forget", "after the forget"]
    assert not await store.journal.accept("e1", {}, ttl=60)  # still deduplicated
    assert await store.journal.outcome("e1") == "forgotten"


async def test_idle_sessions_are_purged_after_the_ttl(tmp_path):
    clock = Clock()
    store = SqliteStore(str(tmp_path / "s.sqlite3"), clock=clock, session_ttl=100)
    await store.open()
    await store.sessions.put("wx:dm:tg.1", "main", {"v": 1})
    clock.now += 60
    await store.sessions.put("wx:dm:tg.2", "main", {"v": 2})
    clock.now += 50
    assert await store.sessions.purge(clock.now) == 1  # tg.1 idle 110 s, tg.2 only 50 s
    assert [r.key for r in await store.sessions.list()] == ["wx:dm:tg.2"]
    await store.close()


async def test_a_sqlite_file_from_before_retention_is_migrated_on_open(tmp_path):
    import sqlite3

    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE state (session_key TEXT NOT NULL, backend TEXT NOT NULL, value TEXT NOT NULL,"
        " updated REAL NOT NULL, PRIMARY KEY (session_key, backend));"
        "CREATE TABLE rates (key TEXT PRIMARY KEY, window_start REAL NOT NULL, count INTEGER NOT NULL);"
        """INSERT INTO state VALUES ('wx:group:tg.-1:user:tg.42', 'main', '{"thread_id": "t"}', 1.0);"""
        "INSERT INTO rates VALUES ('tg.42', 0, 3);"
    )
    db.commit()
    db.close()
    store = SqliteStore(str(path))
    await store.open()
    assert await store.sessions.get("wx:group:tg.-1:user:tg.42", "main") == {"thread_id": "t"}
    assert await store.sessions.forget(["tg.42"]) == ["wx:group:tg.-1:user:tg.42"]
    assert await store.counters.purge(10.0, "2026-01-01") == 1  # an old window: no end known
    await store.close()


async def test_redis_state_from_before_retention_is_moved_on_open():
    async with redis_prefix() as prefix:
        old = RedisStore(REDIS_URL, prefix=prefix)
        await old.open()
        await old.redis.hset(f"{prefix}:state:main", "wx:dm:tg.42", '{"thread_id": "t"}')
        await old.redis.sadd(f"{prefix}:sessions", "wx:dm:tg.42")
        await old.close()
        store = RedisStore(REDIS_URL, prefix=prefix)
        await store.open()
        assert await store.sessions.get("wx:dm:tg.42", "main") == {"thread_id": "t"}
        assert [row.key for row in await store.sessions.list()] == ["wx:dm:tg.42"]
        assert not await store.redis.exists(f"{prefix}:state:main", f"{prefix}:sessions")
        await store.close()


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
