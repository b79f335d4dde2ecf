"""The store contract, run against SQLite and a real Redis: dedup with TTL, pending, state."""

from __future__ import annotations

import pytest

from bridge.store.redis import RedisStore
from bridge.store.sqlite import SqliteStore
from tests.conftest import REDIS_URL, redis_prefix


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["sqlite", "redis"])
async def store(request, tmp_path):
    if request.param == "sqlite":
        store = SqliteStore(str(tmp_path / "s.sqlite3"))
        await store.open()
        yield store
        await store.close()
        return
    async with redis_prefix() as prefix:
        store = RedisStore(REDIS_URL, prefix=prefix)
        await store.open()
        yield store
        await store.close()


async def test_accept_is_once_per_event(store):
    assert await store.journal.accept("tg:1", {"text": "a"}, ttl=60) is True
    assert await store.journal.accept("tg:1", {"text": "a"}, ttl=60) is False
    assert await store.journal.accept("tg:2", {"text": "b"}, ttl=60) is True


async def test_pending_until_completed_in_order(store):
    for n in range(3):
        await store.journal.accept(f"e{n}", {"n": n}, ttl=60)
    await store.journal.complete("e1")
    assert [p["n"] for p in await store.journal.pending()] == [0, 2]


async def test_state_per_session_and_backend(store):
    await store.sessions.put("wx:dm:tg.1", "main", {"thread_id": "t1"})
    await store.sessions.put("wx:dm:tg.2", "main", {"thread_id": "t2"})
    await store.sessions.put("wx:dm:tg.1", "other", {"history": [1]})
    assert await store.sessions.get("wx:dm:tg.1", "main") == {"thread_id": "t1"}
    assert await store.sessions.get("wx:dm:tg.2", "main") == {"thread_id": "t2"}
    assert await store.sessions.get("wx:dm:tg.3", "main") == {}
    assert await store.sessions.count() == 2


async def test_sqlite_seen_ids_expire(tmp_path):
    clock = Clock()
    store = SqliteStore(str(tmp_path / "s.sqlite3"), clock=clock)
    await store.open()
    assert await store.journal.accept("x", {}, ttl=10)
    clock.now += 5
    assert not await store.journal.accept("x", {}, ttl=10)
    clock.now += 6
    assert await store.journal.accept("x", {}, ttl=10)  # remembered only for its TTL
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
    assert [p["text"] for p in await second.journal.pending()] == ["kept"]
    assert await second.sessions.get("k", "b") == {"v": 1}
    assert not await second.journal.accept("e", {}, ttl=60)
    await second.close()


async def test_hits_count_per_key_within_a_window(store):
    assert [await store.counters.hit("tg.42", 60, 120.0) for _ in range(3)] == [1, 2, 3]
    assert await store.counters.hit("tg.43", 60, 130.0) == 1  # another person's count
    assert await store.counters.hit("tg.42", 60, 179.9) == 4  # same window [120, 180)
    assert await store.counters.hit("tg.42", 60, 180.0) == 1  # a new window starts over


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


async def test_forgetting_pending_text_keeps_the_asking_message_and_later_ones(store):
    def message(sender: str, text: str) -> dict:
        return {"platform": "telegram", "workspace": None, "sender_id": sender, "text": text}

    await store.journal.accept("e1", message("42", "my secret"), ttl=60)
    await store.journal.accept("e2", message("43", "someone else"), ttl=60)
    await store.journal.accept("e3", message("42", "/forget"), ttl=60)
    await store.journal.accept("e4", message("42", "after the forget"), ttl=60)
    assert await store.journal.forget([("telegram", None, "42")], keep="e3") == 1
    texts = [p["text"] for p in await store.journal.pending()]
    assert texts == ["someone else", "/forget", "after the forget"]
    assert not await store.journal.accept("e1", {}, ttl=60)  # still deduplicated


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
