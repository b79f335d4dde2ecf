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
from bridge.metrics import Metrics
from bridge.roles import check_layout
from bridge.types import ChatKind, Inbound, Outbound
from bridge.workqueue import Consumer, partition_of
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
        self.taken: list[tuple[str, str, asyncio.Future[None]]] = []

    def take(self, inbound: Inbound, event_id: str) -> asyncio.Future[None]:
        done = asyncio.get_running_loop().create_future()
        self.taken.append((event_id, inbound.text, done))
        return done

    def texts(self) -> list[str]:
        return [text for _, text, _ in self.taken]


def consumer(queue, leases, holder: str, metrics: Metrics | None = None) -> Consumer:
    return Consumer(
        queue, leases, holder=holder, partitions=2, ttl=1.0, window=16,
        metrics=metrics or Metrics(),
    )  # fmt: skip


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

        queue_a, leases_a = CutOff(store.workqueue), CutOff(store.leases)
        first, first_router = consumer(queue_a, leases_a, "worker-a"), Router()
        first.start(first_router)
        second, second_router = consumer(store.workqueue, store.leases, "worker-b"), Router()
        try:
            await eventually(lambda: len(first_router.taken) == 3, 10)
            assert first_router.texts() == ["question 0", "question 1", "question 2"]
            event, _, done = first_router.taken[0]
            await first.complete(event)  # question 0 answered and acknowledged
            done.set_result(None)

            # Worker A is cut off from Redis while answering question 1.
            queue_a.cut = leases_a.cut = True
            second.start(second_router)
            await intake.handle(dm("alice", "question 3", "a3"))  # arrives meanwhile
            await eventually(lambda: len(second_router.taken) == 3, 15)
            # B first claims what A left unacknowledged, then reads the new message.
            assert second_router.texts() == ["question 1", "question 2", "question 3"]

            # A wakes up: its lease is gone, so it may neither post nor acknowledge.
            stale = first_router.taken[1][0]
            reply = Outbound(platform="console", chat_id="alice", parts=("late",), event_id=stale)
            with pytest.raises(NotOwner):
                first.guard(reply)
            queue_a.cut = leases_a.cut = False
            await first.complete(stale)  # leaves it to B
            for event, _, done in second_router.taken:
                second.guard(Outbound(platform="console", chat_id="alice", parts=("x",), event_id=event))
                await second.complete(event)
                done.set_result(None)
            partition = partition_of("wx:dm:cl.alice", 2)
            assert await store.workqueue.backlog(partition) == 0
        finally:
            for worker in (first, second):
                await worker.stop()


async def test_a_redis_outage_pauses_the_worker_and_loses_nothing():
    async with scoped_store() as store:
        intake = Intake(store.workqueue, config().bridge, Metrics())
        queue = CutOff(store.workqueue)
        worker, router = consumer(queue, store.leases, "worker-a"), Router()
        worker.start(router)
        try:
            await intake.handle(dm("bob", "before", "b0"))
            await eventually(lambda: len(router.taken) == 1, 10)
            queue.cut = True  # reads and acknowledgements fail from now on
            acknowledging = asyncio.create_task(worker.complete(router.taken[0][0]))
            await intake.handle(dm("bob", "during", "b1"))  # ingress still reaches Redis
            with pytest.raises(StoreUnavailable):
                await queue.backlog(0)
            queue.cut = False  # Redis is back
            await acknowledging
            router.taken[0][2].set_result(None)
            await eventually(lambda: router.texts() == ["before", "during"], 10)
        finally:
            await worker.stop()


async def test_a_burst_of_events_larger_than_the_connection_pool_is_accepted_whole():
    async with scoped_store() as store:
        intake = Intake(store.workqueue, config().bridge, Metrics())
        burst = [dm(f"user{n}", "hello", f"burst{n}") for n in range(512)]
        accepted = await asyncio.gather(*(intake.handle(message) for message in burst))
        assert all(accepted)
        assert sum([await store.workqueue.backlog(p) for p in (0, 1)]) == len(burst)
