"""The bridge's one HTTP server (aiohttp): /healthz, /readyz, /metrics and the adapters' webhooks.

aiohttp is already a dependency of discord.py and slack-bolt's async mode, so it costs nothing new.
A watch task checks the same readiness report every few seconds, so that a platform connecting or
dropping is logged (and its gauge set) even when nobody scrapes /readyz.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from .adapter import HttpRoute

log = logging.getLogger("bridge.http")

# The readiness report: {"ready": bool, "components": {name: {"ready": bool, "detail": str}}}
Readiness = Callable[[], Awaitable[dict[str, object]]]
MetricsPage = Callable[[], bytes] | Callable[[], Awaitable[bytes]]


class HttpServer:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        readiness: Readiness,
        metrics: MetricsPage,
        routes: Sequence[HttpRoute] = (),
        readiness_timeout: float = 5.0,
        watch_interval: float = 0.0,
    ) -> None:
        self._host = host
        self._port = port
        self._readiness = readiness
        self._metrics = metrics
        self._readiness_timeout = readiness_timeout
        self._watch_interval = watch_interval
        self._app = web.Application()
        self._app.router.add_get("/healthz", self._healthz)
        self._app.router.add_get("/readyz", self._readyz)
        self._app.router.add_get("/metrics", self._metrics_page)
        for route in routes:
            self._app.router.add_route(route.method, route.path, route.handler)
        self._runner: web.AppRunner | None = None
        self._watch: asyncio.Task[None] | None = None
        self._last: dict[str, bool] = {}  # each component's state at the last check
        self._was_ready: set[str] = set()
        self.port = port

    @property
    def paths(self) -> list[str]:
        """Every path served, for the start-up summary."""
        return sorted({r.resource.canonical for r in self._app.router.routes() if r.resource})

    async def start(self) -> None:
        self._runner = web.AppRunner(self._app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        try:
            await site.start()
        except OSError:
            await self._runner.cleanup()
            self._runner = None
            raise
        sockets = site._server.sockets if site._server else []  # the bound port when 0 was asked
        if sockets:
            self.port = sockets[0].getsockname()[1]
        log.info("HTTP server on http://%s:%d", self._host, self.port)

    def watch(self) -> None:
        """Start checking readiness every `watch_interval` seconds (call once adapters start)."""
        if self._watch_interval > 0 and self._watch is None:
            self._watch = asyncio.create_task(self._watching(), name="health watch")

    async def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def report(self) -> dict[str, object]:
        """The readiness report, never hanging longer than `readiness_timeout`."""
        try:
            async with asyncio.timeout(self._readiness_timeout):
                report = await self._readiness()
        except TimeoutError:
            detail = f"readiness check took longer than {self._readiness_timeout:g}s"
            report = {"ready": False, "components": {}, "detail": detail}
        except Exception as exc:  # a broken health() must show as not ready, not as a 500
            log.exception("readiness check failed")
            report = {"ready": False, "components": {}, "detail": f"error: {type(exc).__name__}"}
        self._log_changes(report)
        return report

    def _log_changes(self, report: dict[str, object]) -> None:
        components = report.get("components")
        if not isinstance(components, dict):
            return
        for name, state in components.items():
            ready, detail = bool(state.get("ready")), state.get("detail", "")
            before = self._last.get(name)
            self._last[name] = ready
            if ready == before:
                continue
            context = {} if name == "store" else {"platform": name}
            if ready:
                again = " again" if name in self._was_ready else ""
                self._was_ready.add(name)
                log.info("%s is ready%s: %s", name, again, detail, extra=context)
            elif before is None:
                log.info("%s is not ready yet: %s", name, detail, extra=context)
            else:
                log.warning("%s is not ready: %s", name, detail, extra=context)

    async def _watching(self) -> None:
        while True:
            await self.report()
            await asyncio.sleep(self._watch_interval)

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _readyz(self, request: web.Request) -> web.Response:
        report = await self.report()
        status = 200 if report.get("ready") else 503
        return web.Response(status=status, text=json.dumps(report), content_type="application/json")

    async def _metrics_page(self, request: web.Request) -> web.Response:
        body = self._metrics()
        if inspect.isawaitable(body):
            body = await body
        response = web.Response(body=body)
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response
