"""The running bridge: builds the store, backends, router, HTTP server and adapters from a config,
starts them in order and stops them in reverse, draining in-flight answers first.

Start order matters for "exactly one answer": the store first (SQLite: its lock), then the
pending messages of the enabled platforms are queued in their lanes, then the HTTP server and the
adapters (new messages queue behind the recovered ones), and only then do the lanes run. On a
shared store (Redis) a task looks every `store.recover_every` seconds for a dead process's
messages. Its `Role` (`bridge.roles`)
says what this process does: everything, ingress only, or worker only (whose pending messages
come from the work queue, not from this recovery).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager

from . import __version__
from .access import Gate
from .adapter import Adapter, Health, HttpRoute
from .backends import Backend, build_backend
from .breaker import GuardedBackend, guard
from .budgets import Budgets
from .commands import Commands, Load, Operators, StatusSources
from .config import Config
from .errors import DeliveryFailed
from .forget import Forgetter
from .http import HttpServer
from .logs import brief
from .metrics import Metrics
from .people import People
from .profiles import Profiles
from .retention import Retention
from .roles import AllRole, Role, RoleName
from .router import Router
from .store import Store, open_store
from .streaming import Live
from .types import Inbound, Limits, Outbound, Picture
from .waiting import stopped

log = logging.getLogger("bridge")


class AdapterOutbox:
    """The router's outbox: hands each reply to the adapter of its platform."""

    def __init__(self, adapters: Sequence[Adapter]) -> None:
        self._adapters = {adapter.platform: adapter for adapter in adapters}

    def _adapter(self, platform: str) -> Adapter:
        try:
            return self._adapters[platform]
        except KeyError:
            raise LookupError(f"no running adapter for platform {platform!r}") from None

    def limits(self, platform: str) -> Limits:
        adapter = self._adapters.get(platform)
        return adapter.limits if adapter else Limits(max_len=4000)

    async def send(self, outbound: Outbound) -> str:
        adapter = self._adapters.get(outbound.platform)
        if adapter is None:  # recovery only takes running platforms' messages: a bug if seen
            raise DeliveryFailed(f"no running adapter for platform {outbound.platform!r}")
        return await adapter.send(outbound)

    def dedup_window(self, platform: str) -> float:
        adapter = self._adapters.get(platform)
        return adapter.dedup_window if adapter else 0.0

    def working(self, inbound: Inbound) -> AbstractAsyncContextManager[None]:
        return self._adapter(inbound.platform).working(inbound)

    async def fetch_picture(self, platform: str, picture: Picture, max_bytes: int) -> bytes:
        return await self._adapter(platform).fetch_picture(picture, max_bytes)

    def live(self, inbound: Inbound) -> Live | None:
        adapter = self._adapters.get(inbound.platform)
        return adapter.live(inbound) if adapter is not None else None


class Bridge:
    def __init__(
        self,
        config: Config,
        adapters: Sequence[Adapter],
        *,
        metrics: Metrics | None = None,
        store: Store | None = None,
        backends: Mapping[str, Backend] | None = None,
        serve_http: bool | None = None,
        role: Role | None = None,
    ) -> None:
        self.config = config
        self.adapters = list(adapters)
        self.metrics = metrics or Metrics()
        self.store = store or open_store(config.bridge, owner=True)
        self.role = role or AllRole()
        answers = self.role.name is not RoleName.INGRESS  # an ingress never asks a backend
        self.backends = (
            dict(backends)
            if backends is not None
            else {
                name: build_backend(name, cfg, pacing=getattr(self.store, "pacing", None))
                for name, cfg in config.backends.items()
                if answers
            }
        )
        # The router calls each backend through a circuit breaker (botbridge_circuit_state).
        self.guarded = guard(
            self.backends,
            self.metrics,
            threshold=config.bridge.breaker_threshold,
            cooldown=config.bridge.breaker_cooldown,
        )
        self.metrics.describe(__version__, [adapter.platform for adapter in self.adapters])
        people = People(config.access)
        routed = self.role.store(self.store)  # a worker's: the fenced journal, patient parts
        self.budgets = Budgets(config.access.budgets, people, routed, self.metrics)
        self.retention = Retention(
            self.store, interval=config.bridge.purge_interval, day=self.budgets.day
        )
        self._started_at = time.monotonic()
        profiles = Profiles.from_config(config)
        self.router = Router(
            store=routed,
            backends=self.guarded,
            outbox=self.role.outbox(AdapterOutbox(self.adapters)),
            settings=config.bridge,
            profiles=profiles,
            metrics=self.metrics,
            gate=Gate(config.access, routed, people=people),
            budgets=self.budgets,
            commands=self._commands(people, profiles),
        )
        serve = config.http.enabled if serve_http is None else serve_http
        self.http = (
            HttpServer(
                config.http.host,
                config.http.port,
                readiness=self.readiness,
                metrics=self.metrics_page,
                routes=self._routes(),
                readiness_timeout=config.http.readiness_timeout,
                watch_interval=config.http.watch_interval,
            )
            if serve
            else None
        )
        self._started: list[Adapter] = []
        self._recovering: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    @property
    def platforms(self) -> list[str]:
        return [adapter.platform for adapter in self.adapters]

    def _routes(self) -> list[HttpRoute]:
        if self.role.deliver(self.router) is None:
            return []  # a worker receives nothing: no webhooks
        return [route for adapter in self.adapters for route in adapter.routes()]

    def _commands(self, people: People, profiles: Profiles) -> Commands:
        """The bridge's commands, with what the operators' ones read from the running bridge."""
        status = StatusSources(
            uptime=lambda: time.monotonic() - self._started_at,
            adapters=lambda: {adapter.platform: adapter.health() for adapter in self.adapters},
            circuits=self.circuits,
            load=self.load,
        )
        forgetter = Forgetter(self.store, people, self.config.bridge.session_keys)
        return Commands(
            store=self.store,
            backends=self.guarded,
            settings=self.config.bridge,
            profiles=profiles,
            operators=Operators(people, self.budgets, forgetter, status),
        )

    async def start(self) -> None:
        """Start everything in order; if a part fails, what already started is stopped again
        (the store's lock released, its thread ended) before the error is raised."""
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        await self.store.open()
        self._started_at = time.monotonic()
        self.retention.start()
        await self.role.prepare()
        if self.role.recovers:
            # Before any new message can arrive: recovered messages keep their places in their
            # lanes. Only the platforms running here: another's messages stay pending for their
            # own daemon.
            await self.router.recover(self.platforms)
        if self.http is not None:
            await self.http.start()  # before the adapters: a webhook may arrive at once
        deliver = self.role.deliver(self.router)
        for adapter in self.adapters:
            await adapter.start(deliver)
            self._started.append(adapter)
            log.info("adapter %s started", adapter.platform, extra={"platform": adapter.platform})
        self.router.open()
        await self.role.start(self.router)
        if self.store.shared and self.role.recovers:
            self._recovering = asyncio.create_task(self._recover_every(), name="recovery")
        if self.http is not None:
            self.http.watch()  # logs each adapter as it connects, and when it drops

    async def _recover_every(self) -> None:
        """Take over a dead process's pending messages (its lease expired) without a restart.
        Stopped by a flag, never cancelled mid-call (see `store.redis.lease.Keeper`)."""
        every = self.config.bridge.store.recover_every
        while not await stopped(self._stopping, every):
            try:
                await self.router.recover(self.platforms)
            except Exception as exc:  # the store is down for a moment: look again later
                log.warning("looking for a dead process's messages failed: %s", brief(exc))

    async def stop(self, drain: float | None = None) -> None:
        """Drain for `drain` seconds (default `bridge.drain_timeout`; 0 cuts the answers under
        way: they stay pending), then stop the adapters, HTTP, backends and store."""
        await self.role.stop_taking()
        if self._recovering is not None:
            self._stopping.set()
            await asyncio.gather(self._recovering, return_exceptions=True)
            self._recovering = None
        await self.router.drain(self.config.bridge.drain_timeout if drain is None else drain)
        await self.role.stop()
        for adapter in reversed(self._started):
            try:
                await adapter.stop()
            except Exception:
                log.exception("adapter %s did not stop cleanly", adapter.platform)
        self._started.clear()
        if self.http is not None:
            await self.http.stop()
        await self.retention.stop()
        await asyncio.gather(*(b.aclose() for b in self.backends.values()), return_exceptions=True)
        await self.store.close()

    async def readiness(self) -> dict[str, object]:
        components: dict[str, Health] = {}
        try:
            await self.store.ping()
            components["store"] = Health(True, self.config.bridge.store.type)
        except Exception as exc:
            components["store"] = Health(False, f"unreachable: {type(exc).__name__}")
        for adapter in self.adapters:
            # Connected is not enough: a platform whose sends keep failing is not ready either.
            failing = self.router.delivery.health.health(adapter.platform)
            components[adapter.platform] = failing or adapter.health()
        components.update(self.role.health())
        ready = all(h.ready for h in components.values())
        return {
            "ready": ready,
            "components": {
                name: {"ready": h.ready, "detail": h.detail} for name, h in components.items()
            },
            # Informational: a short-circuited backend does not make the process unready.
            "backends": {name: {"circuit": state} for name, state in self.circuits().items()},
        }

    def circuits(self) -> dict[str, str]:
        guarded = self.guarded.items()
        return {name: b.breaker.state for name, b in guarded if isinstance(b, GuardedBackend)}

    def load(self) -> Load:
        """Queue depth and backend calls under way, as the metrics have them."""
        sample = self.metrics.registry.get_sample_value
        queued = (sample("botbridge_queued") or 0) + (sample("botbridge_backend_waiting") or 0)
        return Load(int(queued), int(sample("botbridge_backend_in_flight") or 0))

    async def metrics_page(self) -> bytes:
        """/metrics: the registry, with the gauges that are derived (each adapter's connection,
        from its health; the open-session count, from the store) brought up to date first."""
        for adapter in self.adapters:
            ready = adapter.health().ready
            self.metrics.adapter_connected.labels(adapter.platform).set(1 if ready else 0)
        try:
            async with asyncio.timeout(2.0):
                self.metrics.open_sessions.set(await self.store.sessions.count())
        except Exception as exc:  # a scrape must still answer when the store is down
            log.warning("open sessions not counted: %s", brief(exc))
        return self.metrics.render()
