"""Retention: under a constant stream of new one-message users, the store stays bounded (rows,
file size; keys on Redis) because idle sessions, old event ids and finished counters are purged;
and the running bridge purges in the background by itself."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from bridge.journal import Outcome
from bridge.retention import Retention
from bridge.store.redis import RedisStore
from bridge.store.sqlite import SqliteStore
from tests.conftest import REDIS_URL, RecordingConsole, make_config, redis_prefix
from tests.fakes.base import eventually

# The proof drives 100,000 users; BOTBRIDGE_RETENTION_USERS makes it shorter or longer.
USERS = int(os.environ.get("BOTBRIDGE_RETENTION_USERS", "100000"))
DAY = 86400.0
SESSION_TTL, DEDUP_TTL = 30 * DAY, 2 * DAY  # the defaults
PER_DAY = max(1, USERS // 100)  # the stream lasts 100 days: over three TTLs
AT_ONCE = 25


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def day_of(now: float) -> str:
    import time

    return time.strftime("%Y-%m-%d", time.gmtime(now))


async def one_message_user(
    store, n: int, now: float, dedup_ttl: float = DEDUP_TTL, window: float = 3600
) -> None:
    """What the bridge stores for one person's one question and its answer."""
    event = f"telegram::{n}"
    user = str(10_000_000 + n)
    payload = {"platform": "telegram", "sender_id": user, "text": "a question of modest length"}
    await store.journal.accept(event, payload, dedup_ttl)
    await store.counters.hit(f"tg.{user}", window, now)
    await store.sessions.put(f"wx:dm:tg.{user}", "main", {"history": ["q" * 40, "a" * 200]})
    await store.counters.add(day_of(now), [(f"tg.{user}", "*"), ("all", "*")], 250)
    await store.journal.complete(event, Outcome.ANSWERED)


def sqlite_rows(path: Path) -> int:
    import sqlite3

    db = sqlite3.connect(path)
    tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    total = sum(db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in tables)
    db.close()
    return total - 1  # the meta row (the /forget secret) is always there


def size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))  # with the WAL


async def test_sqlite_stays_bounded_under_a_stream_of_new_users(tmp_path):
    clock = Clock()
    path = tmp_path / "state.sqlite3"
    store = SqliteStore(str(path), clock=clock, session_ttl=SESSION_TTL)
    await store.open()
    try:
        retention = Retention(store, interval=3600, day=day_of, clock=clock)
        # Live at most: 31 days of sessions, 3 days of event ids, 2 days of token counts, the
        # rate windows of the last hour (plus the day's `all` count).
        live_bound = PER_DAY * (31 + 3 + 2 + 1) + 10
        sizes, rows = [], []
        start = clock.now
        # People arrive AT_ONCE at a time, as under load (the store commits their writes in
        # shared transactions); one after another the 100,000 took about two minutes.
        for first in range(0, USERS, AT_ONCE):
            people = range(first, min(first + AT_ONCE, USERS))
            clock.now = start + people[-1] * DAY / PER_DAY
            await asyncio.gather(
                *(one_message_user(store, n, start + n * DAY / PER_DAY) for n in people)
            )
            if any(n % PER_DAY == PER_DAY - 1 for n in people):  # a sweep a day
                await retention.sweep()
                rows.append(sqlite_rows(path))
                sizes.append(size(path))
        assert max(rows) <= live_bound, (max(rows), live_bound)
        # After 31 steady days the file no longer grows: space freed by purges is reused.
        steady = sizes[31:]
        assert max(steady) <= 1.25 * steady[0], (steady[0], max(steady))
        print(f"{USERS} users: rows at most {max(rows)}, file {steady[0]}..{max(steady)} bytes")
        # Everyone idle past every TTL: nothing about them is left, and the file shrinks.
        clock.now += SESSION_TTL + DAY
        swept = await retention.sweep()
        assert swept.sessions > 0 and swept.events > 0
        assert sqlite_rows(path) == 0
        empty = SqliteStore(str(tmp_path / "empty.sqlite3"))
        await empty.open()
        await empty.compact()
        await empty.close()
        # Back to the size of a new store, give or take a few pages.
        assert size(path) <= size(tmp_path / "empty.sqlite3") + 64 * 1024, size(path)
    finally:
        await store.close()


async def test_redis_keys_stay_bounded_under_a_stream_of_new_users():
    async with redis_prefix() as prefix:
        await _redis_stream(prefix)


async def _redis_stream(prefix: str) -> None:
    # Redis expires keys by its own clock, so this runs on real time with short TTLs; the
    # session index (a sorted set) is purged by the store's clock.
    clock = Clock()
    store = RedisStore(REDIS_URL, prefix=prefix, session_ttl=1, clock=clock)
    await store.open()
    users = min(USERS, 20_000)  # a round trip each over the socket: keep CI quick

    async def keys() -> int:
        return len([k async for k in store.redis.scan_iter(match=f"{store.prefix}:*", count=1000)])

    try:
        for n in range(users):
            await one_message_user(store, n, clock.now, dedup_ttl=1.0, window=1.0)
        assert await keys() >= users  # (keys of 1 s expire while the stream runs)
        clock.now += 2
        assert await store.sessions.purge(clock.now) == users  # the index, by the store's clock
        # Redis expires the rest by itself: only the day's token counts stay (2 days, then gone),
        # and a few keys per process (its lease, the list of owners, the /forget secret).
        await eventually(lambda: _at_most(keys, users + 10), timeout=60, every=0.5)
        left = [k async for k in store.redis.scan_iter(match=f"{store.prefix}:*", count=1000)]
        assert {k.split(":")[1] for k in left} <= {"meta", "tokens", "owners", "lease"}
        for key in left[:100]:
            if ":tokens:" in key:
                assert 0 < await store.redis.ttl(key) <= 2 * DAY
    finally:
        await store.close()


async def _at_most(count, limit: int) -> bool:
    return await count() <= limit


async def test_the_running_bridge_purges_idle_sessions_by_itself(tmp_path, running):
    config = make_config(
        {
            "backends": {"e": {"type": "echo"}},
            "bridge": {
                "store": {"path": str(tmp_path / "s.sqlite3")},
                "session_ttl": 0.5,
                "purge_interval": 0.1,
            },
        }
    )
    console = RecordingConsole(user="ann")
    bridge = await running(config, console)
    await console.say("hello")
    await console.replies(1)
    assert await bridge.router.idle(5)
    assert await eventually(lambda: _none_left(bridge), timeout=20, every=0.1)


async def _none_left(bridge) -> bool:
    return await bridge.store.sessions.count() == 0
