"""Leases with fencing tokens on a real Redis: one holder at a time, a larger token for every new
holder, no silent revival of a lapsed lease; partitions shared out over the live workers; one
elected poller, replaced when it dies or stalls."""

from __future__ import annotations

import asyncio
import inspect

from bridge.errors import StoreUnavailable
from bridge.leases import Election, Partitions
from tests.fakes.base import eventually
from tests.fakes.redis_server import scoped_store


async def test_one_holder_at_a_time_and_each_new_holder_gets_a_larger_token():
    async with scoped_store() as store:
        leases = store.leases
        first = await leases.acquire("p1", "alice", 30)
        assert first is not None
        assert await leases.acquire("p1", "bob", 30) is None
        assert await leases.renew([("p1", first)], "alice", 30) == [True]
        assert await leases.renew([("p1", first)], "bob", 30) == [False]
        await leases.release("p1", "bob", first)  # not bob's: nothing happens
        assert await leases.acquire("p1", "bob", 30) is None

        await leases.release("p1", "alice", first)
        second = await leases.acquire("p1", "bob", 30)
        assert second is not None and second > first
        assert await leases.fence("p1") == second
        # Alice's old token is worth nothing now, whoever holds the key.
        assert await leases.renew([("p1", first)], "alice", 30) == [False]


async def test_a_lapsed_lease_is_not_revived_by_its_old_holder():
    async with scoped_store() as store:
        leases = store.leases
        token = await leases.acquire("p2", "alice", 0.2)
        assert token is not None
        await eventually(_gone(store, "p2"), 10)
        # Nobody took it meanwhile, yet alice must take it anew (and gets a new token).
        assert await leases.renew([("p2", token)], "alice", 30) == [False]
        again = await leases.acquire("p2", "alice", 30)
        assert again is not None and again > token


def _gone(store, tag):
    async def check():
        return await store.redis.exists(store.tagged(tag, "lease")) == 0

    return check


class Recorder:
    def __init__(self) -> None:
        self.gained: list[tuple[int, int]] = []
        self.releasing: list[int] = []
        self.lost: list[int] = []
        self.busy: set[int] = set()

    def keeper(self, leases, holder: str, **kw) -> Partitions:
        return Partitions(
            leases,
            holder=holder,
            count=kw.pop("count", 4),
            ttl=kw.pop("ttl", 30.0),
            gained=lambda p, t: self.gained.append((p, t)),
            releasing=self.releasing.append,
            lost=self.lost.append,
            busy=lambda p: p in self.busy,
            **kw,
        )


async def test_partitions_are_shared_out_over_the_live_workers_and_handed_over_when_idle():
    async with scoped_store() as store:
        a_seen, b_seen = Recorder(), Recorder()
        a = a_seen.keeper(store.leases, "worker-a")
        b = b_seen.keeper(store.leases, "worker-b")
        await a.beat()
        assert sorted(a.held) == [0, 1, 2, 3]  # alone: everything

        await b.beat()  # two workers now, but everything is taken
        assert b.held == {} and b.live == 2
        a_seen.busy = set(a.held)  # a is answering a message of each partition
        await a.beat()
        giving = sorted(a_seen.releasing)
        assert len(giving) == 2  # its share is 2: the two it ranks lowest go
        await a.beat()
        assert sorted(a.held) == [0, 1, 2, 3]  # still busy: kept until its work there ends

        a_seen.busy = set()
        await a.beat()
        assert sorted(a_seen.lost) == giving and sorted(a.held) == sorted(set(range(4)) - set(giving))
        await b.beat()
        assert sorted(b.held) == giving
        for partition, token in b_seen.gained:
            assert token == await store.leases.fence(f"p{partition}")
            assert b.valid(partition, token) and not a.valid(partition, token)


async def test_a_lease_past_its_local_deadline_is_given_up_and_taken_anew_with_a_new_token():
    async with scoped_store() as store:
        now = [100.0]
        seen = Recorder()
        keeper = seen.keeper(store.leases, "worker-a", count=1, ttl=30.0, clock=lambda: now[0])
        await keeper.beat()
        (partition, token), = seen.gained
        assert keeper.valid(partition, token)
        now[0] += 30.0  # the process was paused past its lease (Redis's key still stands)
        assert not keeper.valid(partition, token)
        seen.busy = {partition}  # its old work has not noticed yet
        await keeper.beat()
        assert seen.lost == [partition] and keeper.held == {}  # not renewed: given up
        seen.busy = set()
        await keeper.beat()
        (_, first), (_, second) = seen.gained
        assert second > first and keeper.valid(partition, second)
        assert not keeper.valid(partition, first)  # never valid again


class CutOff:
    """The store's lease side, behind a network cable the test can pull."""

    def __init__(self, leases) -> None:
        self._leases = leases
        self.cut = False

    def __getattr__(self, name):
        method = getattr(self._leases, name)
        if not inspect.iscoroutinefunction(method):
            return method

        async def call(*args, **kwargs):
            if self.cut:
                raise StoreUnavailable("cable pulled")
            return await method(*args, **kwargs)

        return call


async def test_the_elected_poller_is_replaced_when_it_dies_and_steps_down_when_it_stalls():
    async with scoped_store() as store:
        working: list[str] = []
        healthy = {"first": True, "second": True}

        def work(name):
            async def run():
                working.append(name)
                await asyncio.Future()  # polls until cancelled

            return run

        cables = {"first": CutOff(store.leases), "second": CutOff(store.leases)}
        elections = {
            name: Election(cables[name], "telegram-poller:1", holder=name, ttl=1.0)
            for name in cables
        }
        tasks = {
            name: asyncio.create_task(e.run(work(name), lambda name=name: healthy[name]))
            for name, e in elections.items()
        }
        try:
            await eventually(lambda: len(working) == 1, 10)
            leader = working[0]
            other = "second" if leader == "first" else "first"
            assert elections[leader].leading and not elections[other].leading

            # The leader is cut off from Redis (as good as dead): its lease lapses, it stops
            # working at its local deadline, and the other takes over.
            cables[leader].cut = True
            await eventually(lambda: working[-1:] == [other], 10)
            assert not elections[leader].leading

            # The new leader stalls (no getUpdates round trip): it steps down for the first.
            cables[leader].cut = False
            healthy[other] = False
            await eventually(lambda: working[-1:] == [leader], 10)
            assert elections[leader].leading and not elections[other].leading
        finally:
            for task in tasks.values():
                task.cancel()
            await asyncio.gather(*tasks.values(), return_exceptions=True)
