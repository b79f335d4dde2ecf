"""The store contract, run against SQLite and a real Redis: dedup with TTL, pending, state."""

from __future__ import annotations

import os
import uuid
from collections.abc import Awaitable, Callable

import pytest

from bridge.store.redis import RedisStore
from bridge.store.sqlite import SqliteStore

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def redis_or_skip(start: Callable[[], Awaitable[object]]) -> None:
    """Start something that needs Redis, or skip the test where none answers (never in CI)."""
    try:
        await start()
    except OSError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no Redis at {REDIS_URL}: {exc}")


@pytest.fixture(params=["sqlite", "redis"])
async def store(request, tmp_path):
    if request.param == "sqlite":
        store = SqliteStore(str(tmp_path / "s.sqlite3"))
    else:
        store = RedisStore(REDIS_URL, prefix=f"test-{uuid.uuid4().hex}")
        await redis_or_skip(store.open)
        await store.close()
    await store.open()
    yield store
    if isinstance(store, RedisStore):
        keys = await store.redis.keys(f"{store.prefix}:*")
        if keys:
            await store.redis.delete(*keys)
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

    prefixes = [f"bot-{name}-{uuid.uuid4().hex[:8]}" for name in ("a", "b")]
    bridges, consoles = [], []
    try:
        for prefix in prefixes:
            console = RecordingConsole(user="ann")
            backend = {"type": "openai", "base_url": openai_fake.base_url, "session": "body"}
            config = make_config({"backends": {"main": backend}, "bridge": {
                "store": {"type": "redis", "url": REDIS_URL, "prefix": prefix}}})  # fmt: skip
            bridge = Bridge(config, [console])
            await redis_or_skip(bridge.start)
            bridges.append(bridge)
            consoles.append(console)
        a, b = consoles
        await a.say("hello", event_id="ev-1")
        await b.say("hello", event_id="ev-1")  # the same id: not a duplicate for the other bot
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
        for prefix in prefixes:
            assert await redis.keys(f"{prefix}:*")
        assert not await redis.keys("botbridge:*seen*ev-1*")  # nothing under the default prefix
    finally:
        for bridge in bridges:
            redis = bridge.store.redis  # type: ignore[attr-defined]
            keys = await redis.keys(f"{bridge.config.bridge.store.prefix}:*")
            if keys:
                await redis.delete(*keys)
            await bridge.stop()
