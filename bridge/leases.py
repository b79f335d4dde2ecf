"""Leases with fencing tokens, as the split roles use them: the work-queue partitions a worker
holds (`Partitions`), and the one ingress process that polls Telegram (`Election`).

A lease lasts `ttl` seconds after its last renewal and is renewed every third of that. Locally a
lease counts as held only until its deadline: the time the renewal was *sent*, plus `ttl`, less a
margin, which is never later than the moment Redis lets the key expire. So a holder that stalls
(SIGSTOP, a long GC pause, a cut network) stops acting on its own before anyone else can take the
lease over, and its writes fail afterwards because the fencing token moved on. The Redis side is
`bridge.store.redis.fencing`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger("bridge.leases")


class LeaseStore(Protocol):
    """The store's side of leases (`RedisLeases`)."""

    async def acquire(self, tag: str, holder: str, ttl: float) -> int | None: ...

    async def renew(
        self, held: Sequence[tuple[str, int]], holder: str, ttl: float
    ) -> list[bool]: ...

    async def release(self, tag: str, holder: str, token: int) -> None: ...

    async def join(self, group: str, member: str, ttl: float) -> int: ...

    async def leave(self, group: str, member: str) -> None: ...


def margin(ttl: float) -> float:
    """How long before the lease's expiry in Redis its holder stops counting on it: covers the
    clock-rate difference between hosts and the time a post takes to leave the process."""
    return min(1.0, ttl * 0.1)


@dataclass(frozen=True, slots=True)
class Held:
    token: int  # the fencing token: writes carrying an older one fail
    deadline: float  # monotonic; past it, the lease may already be another's

    def valid(self, now: float) -> bool:
        return now < self.deadline


class Partitions:
    """The partitions this worker holds, balanced over the live workers: each takes up to
    ceil(partitions / live workers), preferring its own ranking of them (rendezvous hashing, so
    the same worker tends to get the same partitions back), and gives up any beyond its share.

    The worker is told through three callbacks: `gained(p, token)`, `releasing(p)` (stop taking
    new work from p; it is released once `busy(p)` turns false) and `lost(p)` (released, lapsed
    or taken: its work is no longer this worker's). A partition whose old jobs are still `busy`
    here is not taken again until they have ended, so two epochs of one partition never overlap
    in one process.
    """

    GROUP = "workers"

    def __init__(
        self,
        leases: LeaseStore,
        *,
        holder: str,
        count: int,
        ttl: float,
        gained: Callable[[int, int], None],
        releasing: Callable[[int], None],
        lost: Callable[[int], None],
        busy: Callable[[int], bool],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._leases = leases
        self.holder = holder
        self.count = count
        self.ttl = ttl
        self._gained, self._releasing, self._lost, self._busy = gained, releasing, lost, busy
        self._clock = clock
        self.held: dict[int, Held] = {}
        self._leaving: set[int] = set()  # being given up: no new work, released once idle
        self._ranking = sorted(range(count), key=lambda p: _rank(holder, p))
        self._task: asyncio.Task[None] | None = None
        self._failing = False
        self.live = 0  # workers alive at the last beat

    def tag(self, partition: int) -> str:
        return f"p{partition}"

    def valid(self, partition: int, token: int) -> bool:
        """Whether work claimed under `token` may still act (post, write): checked locally,
        immediately before each post."""
        held = self.held.get(partition)
        return held is not None and held.token == token and held.valid(self._clock())

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="partition leases")

    async def stop(self) -> None:
        """Stop renewing and give every partition up (what is unfinished stays unacknowledged
        on its stream, and the next holder claims it at once)."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        for partition in sorted(self.held):
            await self._release(partition)
        try:
            await self._leases.leave(self.GROUP, self.holder)
        except Exception as exc:  # it expires by itself
            log.warning("worker %s: not unregistered: %r", self.holder, exc)

    async def _run(self) -> None:
        while True:
            try:
                async with asyncio.timeout(self.ttl / 3):
                    await self.beat()
                if self._failing:
                    log.info("partition leases: Redis answers again")
                self._failing = False
            except (TimeoutError, OSError, ConnectionError) as exc:
                self._beat_failed(exc)
            except Exception as exc:  # redis-py's own errors; nothing may end the heartbeat
                self._beat_failed(exc)
            await asyncio.sleep(self.ttl / 3)

    def _beat_failed(self, exc: BaseException) -> None:
        level = logging.DEBUG if self._failing else logging.WARNING
        log.log(level, "partition leases not renewed (%r); held until their deadlines", exc)
        self._failing = True
        self._forget_lapsed()

    async def beat(self) -> None:
        """One heartbeat: say this worker is alive, renew what it holds, then take or give up
        partitions toward its share."""
        sent = self._clock()
        self.live = await self._leases.join(self.GROUP, self.holder, self.ttl)
        held = sorted(self.held.items())
        renewed = await self._leases.renew(
            [(self.tag(p), h.token) for p, h in held], self.holder, self.ttl
        )
        now = self._clock()
        for (partition, lease), ok in zip(held, renewed, strict=True):
            if not ok:
                log.warning("partition %d: lease lost to another worker", partition)
                self._drop(partition)
            elif not lease.valid(now):
                # Renewed in Redis, but too late here: work under it has stopped already, and a
                # lease once given up locally is never revived (it is taken anew, new token).
                log.warning("partition %d: renewed after its deadline; taken anew", partition)
                await self._release(partition)
            else:
                self.held[partition] = Held(lease.token, sent + self.ttl - margin(self.ttl))
        self._forget_lapsed()
        await self._balance(max(1, self.live))

    async def _balance(self, live: int) -> None:
        share = math.ceil(self.count / live)
        for partition in list(self._leaving):
            if not self._busy(partition):
                await self._release(partition)
        keep = [p for p in self._ranking if p in self.held and p not in self._leaving]
        for partition in reversed(keep[share:]):  # the least preferred go first
            log.info("partition %d: handed over (%d workers share %d)", partition, live, self.count)
            self._leaving.add(partition)
            self._releasing(partition)
        wanted = share - min(len(keep), share)
        for partition in self._ranking:
            if wanted <= 0:
                break
            if partition in self.held or self._busy(partition):
                continue
            sent = self._clock()
            token = await self._leases.acquire(self.tag(partition), self.holder, self.ttl)
            if token is None:
                continue
            self.held[partition] = Held(token, sent + self.ttl - margin(self.ttl))
            wanted -= 1
            log.info("partition %d: taken (fencing token %d)", partition, token)
            self._gained(partition, token)

    def _forget_lapsed(self) -> None:
        now = self._clock()
        for partition, lease in list(self.held.items()):
            if not lease.valid(now):
                log.warning("partition %d: lease lapsed (no renewal in time)", partition)
                self._drop(partition)

    async def _release(self, partition: int) -> None:
        lease = self.held.get(partition)
        self._drop(partition)
        if lease is None:
            return
        try:
            await self._leases.release(self.tag(partition), self.holder, lease.token)
        except Exception as exc:  # it lapses by itself
            log.warning("partition %d: lease not released: %r", partition, exc)

    def _drop(self, partition: int) -> None:
        self._leaving.discard(partition)
        if self.held.pop(partition, None) is not None:
            self._lost(partition)


class Election:
    """One process at a time does `work` (polls Telegram), under a lease it renews while
    `healthy()`. Losing the lease, or its deadline passing unrenewed, cancels the work at once;
    an unhealthy leader lets go and waits one lease before standing again, so another process
    gets its turn."""

    def __init__(
        self,
        leases: LeaseStore,
        tag: str,
        *,
        holder: str,
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._leases = leases
        self.tag = tag
        self.holder = holder
        self.ttl = ttl
        self._clock = clock
        self.held: Held | None = None

    @property
    def leading(self) -> bool:
        held = self.held
        return held is not None and held.valid(self._clock())

    async def run(
        self, work: Callable[[], Awaitable[None]], healthy: Callable[[], bool] = lambda: True
    ) -> None:
        """Stand for election forever (until cancelled); do `work` while elected."""
        every = self.ttl / 3
        while True:
            try:
                sent = self._clock()
                token = await self._leases.acquire(self.tag, self.holder, self.ttl)
            except Exception as exc:
                log.warning("%s: cannot stand for election (%r); trying again", self.tag, exc)
                token = None
            if token is None:
                await asyncio.sleep(every)
                continue
            self.held = Held(token, sent + self.ttl - margin(self.ttl))
            log.info("%s: elected (fencing token %d)", self.tag, token)
            stepped_down = await self._lead(work, healthy, token)
            if stepped_down:
                await asyncio.sleep(self.ttl)

    async def _lead(
        self, work: Callable[[], Awaitable[None]], healthy: Callable[[], bool], token: int
    ) -> bool:
        """Do `work` while the lease holds; True if this process stepped down as unhealthy."""
        task = asyncio.create_task(work(), name=f"elected {self.tag}")
        try:
            while True:
                assert self.held is not None
                # Wake at the next renewal or the deadline, whichever comes first.
                wait = max(0.0, min(self.ttl / 3, self.held.deadline - self._clock()))
                done, _ = await asyncio.wait({task}, timeout=wait)
                if done:
                    log.error("%s: the elected work ended", self.tag, exc_info=task.exception())
                    return True
                if not healthy():
                    log.warning("%s: not healthy: stepping down for another process", self.tag)
                    return True
                if not await self._renew(token):
                    return False
        finally:
            self.held = None
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            # A no-op unless the lease is still ours (the script checks holder and token).
            await self._release(token)

    async def _renew(self, token: int) -> bool:
        sent = self._clock()
        try:
            async with asyncio.timeout(self.ttl / 3):
                (ok,) = await self._leases.renew([(self.tag, token)], self.holder, self.ttl)
        except Exception as exc:
            assert self.held is not None
            if self.held.valid(self._clock()):
                log.warning("%s: lease not renewed (%r); held until its deadline", self.tag, exc)
                return True
            log.warning("%s: lease lapsed while Redis was unreachable: stopping", self.tag)
            return False
        if not ok:
            log.warning("%s: lease lost to another process: stopping", self.tag)
            return False
        self.held = Held(token, sent + self.ttl - margin(self.ttl))
        return True

    async def _release(self, token: int) -> None:
        try:
            await self._leases.release(self.tag, self.holder, token)
        except Exception as exc:  # it lapses by itself
            log.warning("%s: lease not released: %r", self.tag, exc)


def _rank(holder: str, partition: int) -> bytes:
    return hashlib.blake2b(f"{holder}:{partition}".encode(), digest_size=8).digest()
