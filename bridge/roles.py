"""The roles of `botbridge run`: `all` (one process receives and answers: the default), `ingress`
(receive, drop redeliveries, put each message on the work queue; never asks a backend) and
`worker` (answer from the work queue and post through the platforms' REST APIs; no gateway, no
poller, no webhook). Several of each may run at once; the split roles need the Redis store.

A `Role` tells the `Bridge` what differs: where adapters deliver, whether the router recovers
pending messages itself, what guards its store and outbox, and what runs beside them.
"""

from __future__ import annotations

import enum
import logging
import uuid
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, Protocol

from .adapter import Deliver, Health
from .around import Around
from .config import Config
from .errors import ConfigError
from .intake import Intake
from .leases import Election
from .metrics import Metrics
from .types import dedup_id
from .workqueue import ClaimedJournal, Consumer, patiently

if TYPE_CHECKING:
    from .router import Outbox, Router
    from .store import Store

log = logging.getLogger("bridge.roles")


class RoleName(enum.StrEnum):
    ALL = "all"
    INGRESS = "ingress"
    WORKER = "worker"


def check_role(config: Config, role: RoleName) -> None:
    """The split roles share their work through Redis: a config error (exit 2) otherwise."""
    if role is not RoleName.ALL and config.bridge.store.type != "redis":
        raise ConfigError(
            "bridge.store.type",
            f"must be redis for --role {role}: ingress and worker processes share the work "
            "through Redis (SQLite serves one process, --role all)",
        )


def process_id() -> str:
    """This process's name among the bridge's processes (leases, consumer names)."""
    return uuid.uuid4().hex[:16]


def poller_election(config: Config, store: Store, holder: str) -> Election | None:
    """On a shared store, Telegram long polling is elected: one process polls a bot token at a
    time (two would make Telegram answer 409 Conflict to both, in turn)."""
    telegram = config.adapters.telegram
    leases = getattr(store, "leases", None)
    if leases is None or telegram is None or not telegram.enabled or telegram.mode != "polling":
        return None
    bot_id = telegram.token.get_secret_value().partition(":")[0]  # the public part of the token
    ttl = config.bridge.claim_idle
    return Election(leases, f"telegram-poller:{bot_id}", holder=holder, ttl=ttl)


class Role(Protocol):
    name: RoleName

    def deliver(self, router: Router) -> Deliver | None:
        """Where adapters hand their events (None: the adapters only send)."""

    def store(self, store: Store) -> Store:
        """The store as the router uses it."""

    def outbox(self, outbox: Outbox) -> Outbox:
        """The outbox as the router uses it."""

    @property
    def recovers(self) -> bool:
        """Whether the router queues the journal's pending messages at start."""

    async def prepare(self) -> None:
        """Once the store is open, before anything starts (a `ConfigError` exits 2)."""

    async def start(self, router: Router) -> None:
        """After the adapters started."""

    async def stop_taking(self) -> None:
        """Before the router drains: take no new work."""

    async def stop(self) -> None:
        """After the router drained."""

    def health(self) -> Mapping[str, Health]: ...


class AllRole:
    """Today's single process: the adapters deliver to the router, which answers."""

    name = RoleName.ALL
    recovers = True

    def deliver(self, router: Router) -> Deliver | None:
        return router.handle

    def store(self, store: Store) -> Store:
        return store

    def outbox(self, outbox: Outbox) -> Outbox:
        return outbox

    async def prepare(self) -> None:
        return None

    async def start(self, router: Router) -> None:
        return None

    async def stop_taking(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def health(self) -> Mapping[str, Health]:
        return {}


class IngressRole(AllRole):
    name = RoleName.INGRESS
    recovers = False  # pending messages are the workers' (claimed from the streams)

    def __init__(self, config: Config, store: Any, metrics: Metrics) -> None:
        self._config = config
        self._queue = store.workqueue
        self.intake = Intake(store.workqueue, config.bridge, metrics)

    def deliver(self, router: Router) -> Deliver | None:
        return self.intake.handle

    async def prepare(self) -> None:
        await check_layout(self._queue, self._config)


class WorkerRole(AllRole):
    name = RoleName.WORKER
    recovers = False  # unfinished messages are claimed from the partitions' streams

    def __init__(self, config: Config, store: Any, metrics: Metrics, holder: str) -> None:
        self._config = config
        self._queue = store.workqueue
        self._claimed = store.claimed
        self.consumer = Consumer(
            store.workqueue,
            store.claimed,
            store.leases,
            holder=holder,
            partitions=config.bridge.store.partitions,
            ttl=config.bridge.claim_idle,
            window=max(64, 2 * config.bridge.max_in_flight),
            metrics=metrics,
        )

    def deliver(self, router: Router) -> Deliver | None:
        return None

    def store(self, store: Store) -> Store:
        return _WorkerStore(store, ClaimedJournal(self.consumer, self._claimed))

    def outbox(self, outbox: Outbox) -> Outbox:
        return _GuardedOutbox(outbox, self.consumer)

    async def prepare(self) -> None:
        await check_layout(self._queue, self._config)

    async def start(self, router: Router) -> None:
        self.consumer.start(router)

    async def stop_taking(self) -> None:
        await self.consumer.stop_reading()

    async def stop(self) -> None:
        await self.consumer.stop()

    def health(self) -> Mapping[str, Health]:
        partitions = self.consumer.partitions
        held = len(partitions.held)
        detail = f"holds {held} of {partitions.count} partitions ({partitions.live} workers)"
        return {"work queue": Health(True, detail)}


def build_role(name: RoleName, config: Config, store: Store, metrics: Metrics, holder: str) -> Role:
    if name is RoleName.INGRESS:
        return IngressRole(config, store, metrics)
    if name is RoleName.WORKER:
        return WorkerRole(config, store, metrics, holder)
    return AllRole()


async def check_layout(queue: Any, config: Config) -> None:
    """Every process of one bridge must split the queue the same way: a different
    `partitions` would put one session's messages on two streams, out of order."""
    wanted = config.bridge.store.partitions
    found = await queue.layout(wanted)
    if found != wanted:
        raise ConfigError(
            "bridge.store.partitions",
            f"{wanted} here, but the work queue under prefix {config.bridge.store.prefix!r} was "
            f"laid out with {found}: every process must use the same number",
        )


class _WorkerStore:
    """A worker's store: the fenced journal of claimed work, and the other parts (sessions,
    counters, controls) waiting out a Redis outage: the message's turn pauses, nothing is given
    up for it."""

    PARTS = ("sessions", "counters", "controls")

    def __init__(self, store: Store, journal: ClaimedJournal) -> None:
        self._store = store
        self.journal = journal
        for name in self.PARTS:
            if hasattr(store, name):
                setattr(self, name, _patient(getattr(store, name)))

    def __getattr__(self, name: str) -> Any:  # anything else, as the store has it
        return getattr(self._store, name)

    async def open(self) -> None:
        await self._store.open()

    async def close(self) -> None:
        await self._store.close()

    async def ping(self) -> None:
        await self._store.ping()


class _GuardedOutbox:
    """A worker's outbox: every post checked, immediately before it leaves, against the lease
    of the partition its message was claimed from."""

    def __init__(self, outbox: Outbox, consumer: Consumer) -> None:
        self._outbox = outbox
        self._consumer = consumer

    def limits(self, platform: str) -> Any:
        return self._outbox.limits(platform)

    async def send(self, outbound: Any) -> str:
        self._consumer.guard(outbound)
        return await self._outbox.send(outbound)

    def dedup_window(self, platform: str) -> float:
        return self._outbox.dedup_window(platform)

    def working(self, inbound: Any) -> AbstractAsyncContextManager[None]:
        # Entered just before the backend call: a message no longer ours is not asked about.
        self._consumer.live(dedup_id(inbound))
        return self._outbox.working(inbound)

    def live(self, inbound: Any) -> Any:
        live = self._outbox.live(inbound)
        if live is None:
            return None
        return _GuardedLive(live, lambda: self._consumer.live(dedup_id(inbound)))

    async def fetch_picture(self, platform: str, picture: Any, max_bytes: int) -> bytes:
        return await self._outbox.fetch_picture(platform, picture, max_bytes)


class _GuardedLive:
    """A streamed answer in a worker: each update and each sealed part checked, just before it
    goes out, like any post."""

    def __init__(self, live: Any, check: Callable[[], object]) -> None:
        self._live = live
        self._check = check
        self.settings = live.settings
        self.refresh = live.refresh

    @property
    def current(self) -> str | None:
        return self._live.current

    async def show(self, text: str) -> None:
        self._check()
        await self._live.show(text)

    async def seal(self, part: str) -> Any:
        self._check()
        return await self._live.seal(part)

    async def close(self) -> None:
        await self._live.close()


def _patient(part: Any) -> Around:
    """`part` whose calls, while Redis is unreachable, wait for it (with backoff)."""
    return Around(part, lambda name, call: patiently(call, name))
