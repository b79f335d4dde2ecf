"""One owner per pending message: the SQLite state file's lock, and on Redis each process's lease,
the take-over of a dead process's messages (only after its lease expired, atomically, only for
the platforms asked for) and the owner check on every journal write."""

from __future__ import annotations

import asyncio
import os

import pytest

from bridge.app import Bridge
from bridge.errors import NotOwner, StoreLocked
from bridge.journal import Outcome, Reply
from bridge.store.redis import RedisStore
from bridge.store.redis.lease import Lease
from bridge.store.sqlite import SqliteStore
from bridge.types import ChatKind, Inbound
from tests.conftest import REDIS_URL, RecordingConsole, make_config, redis_prefix
from tests.fakes.base import eventually

LEASE = 0.4  # seconds: short, so that a "dead" process's lease runs out within the test


def dm(n: int, platform: str = "console") -> dict:
    inbound = Inbound(platform=platform, chat_id=f"u{n}", sender_id=f"u{n}", text=f"q{n}",
                      kind=ChatKind.DM, event_id=f"e{n}")  # fmt: skip
    return inbound.to_dict()


async def test_a_second_store_on_the_same_file_is_refused_naming_the_holder(tmp_path):
    path = str(tmp_path / "state.sqlite3")
    first = SqliteStore(path, owner=True)
    await first.open()
    beside = SqliteStore(path)  # a tool reading beside the daemon is not an owner
    await beside.open()
    await beside.close()
    second = SqliteStore(path, owner=True)
    with pytest.raises(StoreLocked) as refused:
        await second.open()
    assert refused.value.path == path and refused.value.pid == str(os.getpid())
    assert path in str(refused.value) and f"process {os.getpid()}" in str(refused.value)
    await first.close()
    await second.open()  # free again once the first one is gone
    await second.close()


@pytest.fixture
async def redis_stores():
    """`open()` gives a new process's store on one shared prefix; all are cleaned up."""
    opened: list[RedisStore] = []
    async with redis_prefix() as prefix:  # every key under it is deleted afterwards

        async def open_one(lease: float = LEASE) -> RedisStore:
            store = RedisStore(REDIS_URL, prefix=prefix, lease=lease)
            await store.open()
            opened.append(store)
            return store

        yield open_one
        for store in opened:
            await store.close()


async def crash(store: RedisStore) -> None:
    """The process dies: no more heartbeats, nothing released; its lease runs out by itself."""
    assert store._keeper is not None
    await store._keeper.stop(release=False)
    await store.redis.aclose()
    store._redis = None


async def test_a_live_process_keeps_its_messages_a_dead_ones_are_taken_once_expired(
    redis_stores,
):
    alive, other = await redis_stores(), await redis_stores()
    await alive.journal.accept("e1", dm(1), ttl=60)
    await asyncio.sleep(LEASE * 2)  # longer than a lease: the heartbeat keeps it alive
    assert await other.journal.pending() == []

    await crash(alive)
    assert await other.journal.pending() == []  # its lease has not run out yet
    taken = await eventually(other.journal.pending, 5, every=0.05)
    assert [e.event_id for e in taken] == ["e1"] and taken[0].owner == other.owner
    assert (await other.journal.asked("e1", "k", "main"))[0] == 1  # now the taker's


async def test_a_process_that_stalled_past_its_lease_cannot_write_over_its_successor(
    redis_stores,
):
    slow, successor = await redis_stores(), await redis_stores()
    await slow.journal.accept("e1", dm(1), ttl=60)
    await slow.journal.answered("e1", Reply(("one", "two")), None)
    assert slow._keeper is not None
    await slow._keeper.stop(release=False)  # a stall: the lease lapses, the process lives on
    [entry] = await eventually(successor.journal.pending, 5, every=0.05)
    assert entry.reply == Reply(("one", "two"))
    with pytest.raises(NotOwner):
        await slow.journal.sent("e1", 0, "m1")
    with pytest.raises(NotOwner):
        await slow.journal.complete("e1", Outcome.ANSWERED)
    await successor.journal.sent("e1", 0, "m1")
    await successor.journal.complete("e1", Outcome.ANSWERED)
    assert await successor.journal.outcome("e1") == "answered"


async def test_two_processes_taking_over_at_once_never_take_the_same_message(redis_stores):
    dead = await redis_stores()
    for n in range(200):
        await dead.journal.accept(f"e{n}", dm(n), ttl=60)
    await crash(dead)
    takers = [await redis_stores() for _ in range(4)]
    await asyncio.sleep(LEASE * 1.5)
    found = await asyncio.gather(*(t.journal.pending() for t in takers))
    ids = [e.event_id for entries in found for e in entries]
    assert sorted(ids) == sorted(f"e{n}" for n in range(200))  # each exactly once


async def test_only_the_platforms_asked_for_are_taken_over(redis_stores):
    dead = await redis_stores()
    await dead.journal.accept("tg", dm(1, "telegram"), ttl=60)
    await dead.journal.accept("cl", dm(2, "console"), ttl=60)
    await crash(dead)
    console_only = await redis_stores()
    taken = await eventually(lambda: console_only.journal.pending(["console"]), 5, every=0.05)
    assert [e.event_id for e in taken] == ["cl"]
    telegram = await redis_stores()
    assert [e.event_id for e in await telegram.journal.pending(["telegram"])] == ["tg"]


async def test_a_lease_has_one_holder_and_fencing_tokens_only_grow(redis_stores):
    store = await redis_stores()
    first = Lease(store.redis, store.key("lease", "partition-7"), "worker-a", ttl=LEASE)
    second = Lease(store.redis, store.key("lease", "partition-7"), "worker-b", ttl=LEASE)
    token = await first.acquire()
    assert token is not None and await second.acquire() is None
    assert await first.acquire() == token  # holding it again is not a new term
    assert await second.renew() is False
    await first.release()
    later = await second.acquire()
    assert later is not None and later > token
    await asyncio.sleep(LEASE * 1.5)  # lapsed unrenewed
    assert await first.acquire() is not None


async def test_a_dead_daemons_message_is_answered_by_a_live_one_without_a_restart(
    redis_stores, running
):
    async with redis_prefix() as prefix:
        dead = RedisStore(REDIS_URL, prefix=prefix, lease=LEASE)
        await dead.open()
        inbound = dm(1)
        await dead.journal.accept("console::e1", inbound, ttl=60)
        await crash(dead)

        config = make_config({
            "backends": {"echo": {"type": "echo"}},
            "bridge": {"store": {"type": "redis", "url": REDIS_URL, "prefix": prefix, "lease": 1,
                                 "recover_every": 0.1}},
        })  # fmt: skip
        console = RecordingConsole(user="u1")
        bridge = Bridge(config, [console])
        await bridge.start()
        try:
            assert await console.replies(1, timeout=10) == ["[wx:dm:cl.u1] q1"]
            assert bridge.metrics.recovered.labels("accepted")._value.get() == 1
        finally:
            await bridge.stop()
