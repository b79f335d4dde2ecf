"""The bridge's one HTTP server (aiohttp): /healthz, /readyz, /metrics and the adapters' webhooks.

aiohttp is already a dependency of discord.py and slack-bolt's async mode, so it costs nothing new.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from .adapter import HttpRoute

log = logging.getLogger("bridge.http")

# The readiness report: {"ready": bool, "components": {name: {"ready": bool, "detail": str}}}
Readiness = Callable[[], Awaitable[dict[str, object]]]


class HttpServer:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        readiness: Readiness,
        metrics: Callable[[], bytes],
        routes: Sequence[HttpRoute] = (),
    ) -> None:
        self._host = host
        self._port = port
        self._readiness = readiness
        self._metrics = metrics
        self._app = web.Application()
        self._app.router.add_get("/healthz", self._healthz)
        self._app.router.add_get("/readyz", self._readyz)
        self._app.router.add_get("/metrics", self._metrics_page)
        for route in routes:
            self._app.router.add_route(route.method, route.path, route.handler)
        self._runner: web.AppRunner | None = None
        self.port = port

    async def start(self) -> None:
        self._runner = web.AppRunner(self._app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        sockets = site._server.sockets if site._server else []  # the bound port when 0 was asked
        if sockets:
            self.port = sockets[0].getsockname()[1]
        log.info("HTTP server on http://%s:%d", self._host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _readyz(self, request: web.Request) -> web.Response:
        report = await self._readiness()
        status = 200 if report.get("ready") else 503
        return web.Response(status=status, text=json.dumps(report), content_type="application/json")

    async def _metrics_page(self, request: web.Request) -> web.Response:
        response = web.Response(body=self._metrics())
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response
