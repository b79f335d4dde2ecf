"""The running bridge: builds the store, backends, router, HTTP server and adapters from a config,
starts them in order and stops them in reverse, draining in-flight answers first. Its `Role`
(`bridge.roles`) says what this process does: everything, ingress only, or worker only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager

from . import __version__
from .access import Gate
from .adapter import Adapter, Health, HttpRoute
from .backends import Backend, build_backend
from .breaker import GuardedBackend, guard
from .config import Config
from .http import HttpServer
from .metrics import Metrics
from .roles import AllRole, Role, RoleName
from .router import Router
from .store import Store, open_store
from .types import Inbound, Limits, Outbound

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

    async def send(self, outbound: Outbound) -> None:
        await self._adapter(outbound.platform).send(outbound)

    def working(self, inbound: Inbound) -> AbstractAsyncContextManager[None]:
        return self._adapter(inbound.platform).working(inbound)


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
        self.store = store or open_store(config.bridge)
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
        self.router = Router(
            store=self.role.store(self.store),
            backends=self.guarded,
            outbox=self.role.outbox(AdapterOutbox(self.adapters)),
            settings=config.bridge,
            routes=config.routes,
            default_backend=config.default_backend(),
            metrics=self.metrics,
            gate=Gate(config.access, self.store),
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

    def _routes(self) -> list[HttpRoute]:
        if self.role.deliver(self.router) is None:
            return []  # a worker receives nothing: no webhooks
        return [route for adapter in self.adapters for route in adapter.routes()]

    async def start(self) -> None:
        await self.store.open()
        await self.role.prepare()
        if self.http is not None:
            await self.http.start()  # before the adapters: a webhook may arrive at once
        deliver = self.role.deliver(self.router)
        for adapter in self.adapters:
            await adapter.start(deliver)
            self._started.append(adapter)
            log.info("adapter %s started", adapter.platform, extra={"platform": adapter.platform})
        if self.role.recovers:
            await self.router.recover()
        await self.role.start(self.router)
        if self.http is not None:
            self.http.watch()  # logs each adapter as it connects, and when it drops

    async def stop(self) -> None:
        drain = self.config.bridge.drain_timeout
        await self.role.stop_taking()
        await self.router.drain(drain)
        await self.role.stop()
        for adapter in reversed(self._started):
            try:
                await adapter.stop()
            except Exception:
                log.exception("adapter %s did not stop cleanly", adapter.platform)
        self._started.clear()
        if self.http is not None:
            await self.http.stop()
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
            components[adapter.platform] = adapter.health()
        components.update(self.role.health())
        ready = all(h.ready for h in components.values())
        return {
            "ready": ready,
            "components": {
                name: {"ready": h.ready, "detail": h.detail} for name, h in components.items()
            },
            # Informational: a short-circuited backend does not make the process unready.
            "backends": {
                name: {"circuit": b.breaker.state}
                for name, b in self.guarded.items()
                if isinstance(b, GuardedBackend)
            },
        }

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
            log.warning("open sessions not counted: %r", exc)
        return self.metrics.render()
