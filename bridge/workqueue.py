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
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from .errors import NotOwner, StoreUnavailable
from .journal import Entry, Outcome, Reply, SessionWrite, Shown
from .leases import LeaseStore, Partitions
from .metrics import Metrics
from .types import ChatKind, Inbound, Outbound

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


class ClaimedStore(Protocol):
    """The store's journal of claimed messages (`ClaimedRedisJournal`): the journal's writes,
    plus taking entries over under a fencing token."""

    async def own(
        self, partition: int, token: int, owner: str, event_ids: Sequence[str]
    ) -> list[Entry] | None: ...

    def claim(self, event_id: str, partition: int, owner: str, stream_entry: str) -> None: ...

    def release(self, event_id: str) -> None: ...


class Taker(Protocol):
    """The router, as the worker feeds it."""

    def take(self, entry: Entry, inbound: Inbound) -> asyncio.Future[None]: ...


@dataclass(frozen=True, slots=True)
class Claim:
    item: WorkItem
    token: int  # the partition's fencing token when the message was claimed


class Consumer:
    """A worker's partitions, their readers, and the messages claimed from them."""

    def __init__(
        self,
        queue: QueueStore,
        journal: ClaimedStore,
        leases: LeaseStore,
        *,
        holder: str,
        partitions: int,
        ttl: float,
        window: int,
        metrics: Metrics,
    ) -> None:
        self._queue = queue
        self._journal = journal
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
                await self._submit(fresh, partition, token)
                failures = 0
                while self.partitions.valid(partition, token):
                    room = await self._window.room()
                    count = min(room, READ_BATCH)
                    found = await self._queue.read(partition, self.holder, count, READ_BLOCK)
                    await self._submit(found, partition, token)
            except NotOwner:
                return  # the partition moved on: the heartbeat notices and stops this reader
            except StoreUnavailable as exc:
                wait = _BACKOFF[min(failures, len(_BACKOFF) - 1)]
                level = logging.WARNING if failures == 0 else logging.DEBUG
                log.log(level, "partition %d: %s; reading again in %gs", partition, exc, wait)
                failures += 1
                await asyncio.sleep(wait)

    async def _submit(self, items: Sequence[WorkItem], partition: int, token: int) -> None:
        """Make `items` this worker's in the journal (fenced), then queue each in its lane."""
        owner = f"{self.holder}:{token}"
        entries = await self._journal.own(partition, token, owner, [i.event_id for i in items])
        if entries is None:
            raise NotOwner(f"partition {partition}: lease {token} moved on")
        taker = self._taker
        assert taker is not None
        for item, entry in zip(items, entries, strict=True):
            claim = Claim(item, token)
            self._claims[item.event_id] = claim
            self._entries.add((item.partition, item.entry_id))
            self._busy[item.partition] = self._busy.get(item.partition, 0) + 1
            self._window.add()
            self._journal.claim(item.event_id, partition, owner, item.entry_id)
            try:
                inbound = entry.inbound()
            except (KeyError, TypeError, ValueError):
                inbound = None
            if inbound is None:  # the router completes what it cannot read back
                inbound = Inbound(
                    platform=entry.platform, chat_id="", sender_id="", text="", kind=ChatKind.DM,
                    event_id=item.event_id,
                )  # fmt: skip
            taker.take(entry, inbound).add_done_callback(lambda _, c=claim: self._ended(c))

    def _ended(self, claim: Claim) -> None:
        item = claim.item
        if self._claims.get(item.event_id) is claim:
            del self._claims[item.event_id]
            self._journal.release(item.event_id)
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
    work queue, not from `pending()`; every write first checks, here, that this worker still
    holds the message's partition with time left on the lease (a stale holder stops before
    Redis is even asked), then goes to the store, which checks the owner; a Redis outage is
    waited out while the claim lasts."""

    def __init__(self, consumer: Consumer, store: Any) -> None:
        self._consumer = consumer
        self._store = store

    async def _write(self, event_id: str, name: str, *args: Any) -> Any:
        failures = 0
        while True:
            self._consumer.live(event_id)  # NotOwner once the claim is over
            try:
                return await getattr(self._store, name)(event_id, *args)
            except StoreUnavailable as exc:
                if failures == 0:
                    log.warning("%s: %s waits for Redis (%s)", event_id, name, exc)
                await asyncio.sleep(_BACKOFF[min(failures, len(_BACKOFF) - 1)])
                failures += 1

    async def accept(self, event_id: str, payload: Mapping[str, Any], ttl: float) -> bool:
        raise NotOwner("a worker accepts nothing: ingress processes do")

    async def asked(
        self, event_id: str, session_key: str, backend: str
    ) -> tuple[int, dict[str, Any]]:
        return await self._write(event_id, "asked", session_key, backend)

    async def answered(
        self, event_id: str, reply: Reply, session: SessionWrite | None = None
    ) -> float | None:
        return await self._write(event_id, "answered", reply, session)

    async def sending(self, event_id: str, part: int, at: float | None) -> None:
        await self._write(event_id, "sending", part, at)

    async def streaming(self, event_id: str, shown: Shown) -> None:
        await self._write(event_id, "streaming", shown)

    async def sent(self, event_id: str, part: int, message_id: str) -> float:
        return await self._write(event_id, "sent", part, message_id)

    async def complete(self, event_id: str, outcome: Outcome) -> None:
        await self._write(event_id, "complete", outcome)

    async def pending(self, platforms: Collection[str] | None = None) -> list[Entry]:
        return []  # a worker's unfinished messages are claimed from the partitions' streams

    async def forget(self, senders: Sequence[Any], keep: str | None = None) -> int:
        return await self._store.forget(senders, keep)

    async def purge(self, now: float) -> int:
        return await self._store.purge(now)


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
