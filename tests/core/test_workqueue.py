"""The work queue on a real Redis, in one process: ingress's intake puts each message on its
session's partition once; a worker's consumer hands them to the router in order; when a worker is
cut off, the next holder claims what it left, in order, before anything new, and the cut-off
worker can neither post nor acknowledge any more."""

from __future__ import annotations

import asyncio

import pytest

from bridge.config import parse_config
from bridge.errors import ConfigError, NotOwner, StoreUnavailable
from bridge.intake import Intake
from bridge.journal import Entry, Outcome, Stage
from bridge.metrics import Metrics
from bridge.roles import check_layout
from bridge.store.redis._errors import mapped
from bridge.store.redis.claimed import ClaimedRedisJournal
from bridge.types import ChatKind, Inbound, Outbound
from bridge.workqueue import ClaimedJournal, Consumer, partition_of
from tests.core.test_leases import CutOff
from tests.fakes.base import eventually
from tests.fakes.redis_server import scoped_store
from tests.ops.conftest import value


def config(partitions: int = 2):
    return parse_config(
        {
            "backends": {"echo": {"type": "echo"}},
            "bridge": {"store": {"type": "redis", "partitions": partitions}},
        }
    )


def dm(user: str, text: str, event: str) -> Inbound:
    return Inbound(
        platform="console", chat_id=user, sender_id=user, text=text, kind=ChatKind.DM,
        event_id=event,
    )  # fmt: skip


class Router:
    """Stands in for the router: records what it is given; the test ends each turn."""

    def __init__(self) -> None:
        self.taken: list[tuple[Entry, str, asyncio.Future[None]]] = []

    def take(self, entry: Entry, inbound: Inbound) -> asyncio.Future[None]:
        done = asyncio.get_running_loop().create_future()
        self.taken.append((entry, inbound.text, done))
        return done

    def texts(self) -> list[str]:
        return [text for _, text, _ in self.taken]

    def events(self) -> list[str]:
        return [entry.event_id for entry, _, _ in self.taken]


class Worker:
    """One worker process's part of the queue: its consumer, its journal, its router."""

    def __init__(self, store, holder: str, *, cut: bool = False) -> None:
        wrap = CutOff if cut else (lambda part: part)
        self.queue = wrap(store.workqueue)
        self.leases = wrap(store.leases)
        self.store_journal = wrap(mapped(ClaimedRedisJournal(store)))
        self.consumer = Consumer(
            self.queue, self.store_journal, self.leases, holder=holder, partitions=2, ttl=1.0,
            window=16, metrics=Metrics(),
        )  # fmt: skip
        self.journal = ClaimedJournal(self.consumer, self.store_journal)
        self.router = Router()

    def cut(self, off: bool) -> None:
        for part in (self.queue, self.leases, self.store_journal):
            part.cut = off

    async def answered(self, event: str) -> None:
        await self.journal.complete(event, Outcome.ANSWERED)


async def test_a_redelivery_is_dropped_and_each_session_always_lands_on_one_partition():
    async with scoped_store() as store:
        metrics = Metrics()
        intake = Intake(store.workqueue, config().bridge, metrics)
        assert await intake.handle(dm("alice", "hello", "1")) is True
        assert await intake.handle(dm("alice", "hello", "1")) is False  # the platform retried
        assert await intake.handle(dm("alice", "again", "2")) is True
        partition = partition_of("wx:dm:cl.alice", 2)
        assert await store.workqueue.backlog(partition) == 2
        assert await store.workqueue.backlog(1 - partition) == 0
        assert value(metrics.render().decode(), "botbridge_messages_total", platform="console", outcome="duplicate") == 1


async def test_a_process_with_another_partition_count_is_refused_with_the_key_named():
    async with scoped_store() as store:
        await check_layout(store.workqueue, config(partitions=2))
        with pytest.raises(ConfigError) as refused:
            await check_layout(store.workqueue, config(partitions=3))
        assert refused.value.path == "bridge.store.partitions"


async def test_the_next_holder_answers_what_a_cut_off_worker_left_in_order_before_new_work():
    async with scoped_store() as store:
        intake = Intake(store.workqueue, config().bridge, Metrics())
        for i in range(3):
            await intake.handle(dm("alice", f"question {i}", f"a{i}"))

        first, second = Worker(store, "worker-a", cut=True), Worker(store, "worker-b")
        first.consumer.start(first.router)
        try:
            await eventually(lambda: len(first.router.taken) == 3, 10)
            assert first.router.texts() == ["question 0", "question 1", "question 2"]
            entry, _, done = first.router.taken[0]
            assert entry.stage is Stage.ACCEPTED and entry.asks == 0
            await first.answered(entry.event_id)  # question 0 answered and acknowledged
            done.set_result(None)
            asked = first.router.events()[1]
            await first.journal.asked(asked, "wx:dm:cl.alice", "main")  # question 1 is asked

            # Worker A is cut off from Redis while the backend answers question 1.
            first.cut(True)
            second.consumer.start(second.router)
            await intake.handle(dm("alice", "question 3", "a3"))  # arrives meanwhile
            await eventually(lambda: len(second.router.taken) == 3, 15)
            # B first claims what A left unacknowledged (at its stage), then reads the new one.
            assert second.router.texts() == ["question 1", "question 2", "question 3"]
            assert [e.asks for e, _, _ in second.router.taken] == [1, 0, 0]

            # A wakes up: its lease is gone, so it may neither post nor write the journal...
            reply = Outbound(platform="console", chat_id="alice", text="late", event_id=asked)
            with pytest.raises(NotOwner):
                first.consumer.guard(reply)
            first.cut(False)
            with pytest.raises(NotOwner):
                await first.answered(asked)
            # ...and even a write that skipped the local check is refused by Redis: B owns it.
            with pytest.raises(NotOwner):
                await first.store_journal.complete(asked, Outcome.ANSWERED)
            for entry, _, done in second.router.taken:
                second.consumer.guard(
                    Outbound(platform="console", chat_id="alice", text="x", event_id=entry.event_id)
                )
                await second.answered(entry.event_id)
                done.set_result(None)
            partition = partition_of("wx:dm:cl.alice", 2)
            assert await store.workqueue.backlog(partition) == 0
            assert await store.redis.exists(store.tagged(f"p{partition}", "entry", asked)) == 0
        finally:
            for worker in (first, second):
                await worker.consumer.stop()


async def test_a_redis_outage_pauses_the_worker_and_loses_nothing():
    async with scoped_store() as store:
        intake = Intake(store.workqueue, config().bridge, Metrics())
        worker = Worker(store, "worker-a", cut=True)
        worker.consumer.start(worker.router)
        try:
            await intake.handle(dm("bob", "before", "b0"))
            await eventually(lambda: len(worker.router.taken) == 1, 10)
            worker.queue.cut = worker.store_journal.cut = True  # reads and journal writes fail
            event = worker.router.events()[0]
            acknowledging = asyncio.create_task(worker.answered(event))
            await intake.handle(dm("bob", "during", "b1"))  # ingress still reaches Redis
            with pytest.raises(StoreUnavailable):
                await worker.queue.backlog(0)
            worker.queue.cut = worker.store_journal.cut = False  # Redis is back
            await acknowledging
            worker.router.taken[0][2].set_result(None)
            await eventually(lambda: worker.router.texts() == ["before", "during"], 10)
        finally:
            await worker.consumer.stop()


async def test_a_burst_of_events_larger_than_the_connection_pool_is_accepted_whole():
    async with scoped_store() as store:
        intake = Intake(store.workqueue, config().bridge, Metrics())
        burst = [dm(f"user{n}", "hello", f"burst{n}") for n in range(512)]
        accepted = await asyncio.gather(*(intake.handle(message) for message in burst))
        assert all(accepted)
        assert sum([await store.workqueue.backlog(p) for p in (0, 1)]) == len(burst)
