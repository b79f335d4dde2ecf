"""The worker's side of the work queue: read the partitions this worker holds, hand each message to
the router in its session's lane, and acknowledge it only while the partition is still ours.

Per-session order across workers: a session always hashes to the same partition, a partition is
read by one worker at a time (`bridge.leases.Partitions`), and inside a worker the router's lanes
answer one message per session at a time, in stream order. A new holder first claims every entry
its predecessor left unacknowledged (they are older than anything still unread) and only then
reads new ones. A holder that lost its lease stops posting at its local deadline (`guard`, called
immediately before each post) and can no longer acknowledge (the fenced `complete`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from .errors import NotOwner, StoreUnavailable
from .leases import LeaseStore, Partitions
from .metrics import Metrics
from .types import Inbound, Outbound

log = logging.getLogger("bridge.workqueue")

READ_BATCH = 32  # entries per read
READ_BLOCK = 2.0  # seconds a read waits for new entries (and how soon a stopped reader notices)
_BACKOFF = (0.2, 0.5, 1.0, 2.0, 5.0)  # pauses while Redis is unreachable
Result = TypeVar("Result")


@dataclass(frozen=True, slots=True)
class WorkItem:
    """One accepted message on a partition's stream."""

    partition: int
    entry_id: str  # the stream entry's id
    event_id: str  # the journal's id (platform, workspace, platform event id)
    payload: Mapping[str, Any]  # the `Inbound`, as accepted


def partition_of(session_key: str, partitions: int) -> int:
    """The partition of a session: a stable hash, the same in every process and release."""
    digest = hashlib.blake2b(session_key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % partitions


class QueueStore(Protocol):
    """The store's side of the work queue (`RedisWorkQueue`)."""

    async def layout(self, partitions: int) -> int: ...

    async def prepare(self, partition: int) -> None: ...

    async def read(
        self, partition: int, consumer: str, count: int, block: float
    ) -> list[WorkItem]: ...

    async def claim(self, partition: int, consumer: str) -> list[WorkItem]: ...

    async def complete(self, partition: int, token: int, entry_id: str) -> bool: ...


class Taker(Protocol):
    """The router, as the worker feeds it."""

    def take(self, inbound: Inbound, event_id: str) -> asyncio.Future[None]: ...


@dataclass(frozen=True, slots=True)
class Claim:
    item: WorkItem
    token: int  # the partition's fencing token when the message was claimed


class Consumer:
    """A worker's partitions, their readers, and the messages claimed from them."""

    def __init__(
        self,
        queue: QueueStore,
        leases: LeaseStore,
        *,
        holder: str,
        partitions: int,
        ttl: float,
        window: int,
        metrics: Metrics,
    ) -> None:
        self._queue = queue
        self._metrics = metrics
        self.holder = holder
        self.partitions = Partitions(
            leases,
            holder=holder,
            count=partitions,
            ttl=ttl,
            gained=self._gained,
            releasing=self._stop_reading,
            lost=self._lost,
            busy=lambda p: self._busy.get(p, 0) > 0,
        )
        self._window = _Window(window)
        self._taker: Taker | None = None
        self._readers: dict[int, asyncio.Task[None]] = {}
        self._stopped: set[asyncio.Task[None]] = set()  # cancelled readers not yet ended
        self._claims: dict[str, Claim] = {}  # by event id
        self._entries: set[tuple[int, str]] = set()  # (partition, entry id) being answered
        self._busy: dict[int, int] = {}  # messages being answered, per partition

    # ------------------------------------------------------------------------------ lifecycle

    def start(self, taker: Taker) -> None:
        self._taker = taker
        self.partitions.start()

    async def stop_reading(self) -> None:
        """Take no new work (before the router drains what it has)."""
        for partition in list(self._readers):
            self._stop_reading(partition)
        await self._settle()

    async def stop(self) -> None:
        """Give the partitions up: their unfinished messages pass to the next holder at once."""
        await self.stop_reading()
        await self.partitions.stop()

    # ------------------------------------------------------------------------------ partitions

    def _gained(self, partition: int, token: int) -> None:
        self._metrics.partitions_held.set(len(self.partitions.held))
        self._readers[partition] = asyncio.create_task(
            self._read(partition, token), name=f"partition {partition}"
        )

    def _stop_reading(self, partition: int) -> None:
        task = self._readers.pop(partition, None)
        if task is not None:
            task.cancel()
            self._stopped.add(task)
            task.add_done_callback(self._stopped.discard)

    def _lost(self, partition: int) -> None:
        self._metrics.partitions_held.set(len(self.partitions.held))
        self._stop_reading(partition)

    async def _settle(self) -> None:
        await asyncio.gather(*self._stopped, return_exceptions=True)

    async def _read(self, partition: int, token: int) -> None:
        """Claim what the partition's earlier holders left, then read new entries, while the
        partition is ours."""
        failures = 0
        while self.partitions.valid(partition, token):
            try:
                await self._queue.prepare(partition)
                taken = await self._queue.claim(partition, self.holder)
                fresh = [i for i in taken if (partition, i.entry_id) not in self._entries]
                if fresh:
                    self._metrics.taken_over.inc(len(fresh))
                    count = len(fresh)
                    log.info("partition %d: claimed %d unfinished message(s)", partition, count)
                for item in fresh:
                    await self._submit(item, token)
                failures = 0
                while self.partitions.valid(partition, token):
                    room = await self._window.room()
                    count = min(room, READ_BATCH)
                    for item in await self._queue.read(partition, self.holder, count, READ_BLOCK):
                        await self._submit(item, token)
            except StoreUnavailable as exc:
                wait = _BACKOFF[min(failures, len(_BACKOFF) - 1)]
                level = logging.WARNING if failures == 0 else logging.DEBUG
                log.log(level, "partition %d: %s; reading again in %gs", partition, exc, wait)
                failures += 1
                await asyncio.sleep(wait)

    async def _submit(self, item: WorkItem, token: int) -> None:
        taker = self._taker
        assert taker is not None
        try:
            inbound = Inbound.from_dict(item.payload)
        except (KeyError, TypeError, ValueError) as exc:
            log.error(
                "partition %d: entry %s unreadable, dropped: %r", item.partition, item.entry_id, exc
            )
            await self._queue.complete(item.partition, token, item.entry_id)
            return
        claim = Claim(item, token)
        self._claims[item.event_id] = claim
        self._entries.add((item.partition, item.entry_id))
        self._busy[item.partition] = self._busy.get(item.partition, 0) + 1
        self._window.add()
        taker.take(inbound, item.event_id).add_done_callback(lambda _: self._ended(claim))

    def _ended(self, claim: Claim) -> None:
        item = claim.item
        if self._claims.get(item.event_id) is claim:
            del self._claims[item.event_id]
        self._entries.discard((item.partition, item.entry_id))
        self._busy[item.partition] -= 1
        if not self._busy[item.partition]:
            del self._busy[item.partition]
        self._window.done()

    # --------------------------------------------------------------------------- journal's part

    def live(self, event_id: str) -> Claim:
        """The message's claim, if this worker may still act on it; else `NotOwner`."""
        claim = self._claims.get(event_id)
        if claim is None:
            raise NotOwner(f"message {event_id} is not claimed by worker {self.holder}")
        if not self.partitions.valid(claim.item.partition, claim.token):
            raise NotOwner(
                f"partition {claim.item.partition}: lease {claim.token} lapsed or taken over"
            )
        return claim

    def guard(self, outbound: Outbound) -> None:
        """Immediately before a post: refuse it unless this worker still holds the message's
        partition under the token it was claimed with, with time left on the lease."""
        self.live(outbound.event_id)

    async def complete(self, event_id: str) -> None:
        """Acknowledge the message (XACK) while its partition is still ours; otherwise leave it
        unacknowledged for the partition's next holder. Waits out a Redis outage meanwhile."""
        failures = 0
        while True:
            try:
                claim = self.live(event_id)
            except NotOwner as exc:
                log.warning("%s: not acknowledged, left to the next holder (%s)", event_id, exc)
                return
            item = claim.item
            try:
                done = await self._queue.complete(item.partition, claim.token, item.entry_id)
            except StoreUnavailable as exc:
                wait = _BACKOFF[min(failures, len(_BACKOFF) - 1)]
                failures += 1
                log.warning("%s: acknowledgement waits for Redis (%s)", event_id, exc)
                await asyncio.sleep(wait)
                continue
            if not done:
                log.warning("%s: fenced off (partition %d moved on)", event_id, item.partition)
            return


async def patiently(call: Callable[[], Awaitable[Result]], what: str) -> Result:
    """`call()`, again and again (with backoff) while the store is unreachable."""
    failures = 0
    while True:
        try:
            return await call()
        except StoreUnavailable as exc:
            if failures == 0:
                log.warning("%s waits for Redis: %s", what, exc)
            await asyncio.sleep(_BACKOFF[min(failures, len(_BACKOFF) - 1)])
            failures += 1


class ClaimedJournal:
    """The journal as a worker's router sees it: messages arrive accepted (by ingress) from the
    work queue, not from `pending()`, and `complete` is the fenced acknowledgement."""

    def __init__(self, consumer: Consumer) -> None:
        self._consumer = consumer

    async def accept(self, event_id: str, payload: Mapping[str, Any], ttl: float) -> bool:
        raise NotOwner("a worker accepts nothing: ingress processes do")

    async def complete(self, event_id: str) -> None:
        await self._consumer.complete(event_id)

    async def pending(self) -> list[Mapping[str, Any]]:
        return []  # a worker's unfinished messages are claimed from the queue's streams


class _Window:
    """How many claimed messages a worker holds at once: readers wait for room, so one worker
    does not hoard what it cannot answer soon (the bound is soft: a read may overshoot it)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.used = 0
        self._room = asyncio.Event()
        self._room.set()

    async def room(self) -> int:
        while self.used >= self.size:
            self._room.clear()
            await self._room.wait()
        return self.size - self.used

    def add(self) -> None:
        self.used += 1

    def done(self) -> None:
        self.used -= 1
        if self.used < self.size:
            self._room.set()
