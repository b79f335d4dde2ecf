"""The one HTTP server as an operator and a load balancer see it: /healthz, /readyz with each
component's state, /metrics, and the adapters' webhook routes, on a real socket."""

from __future__ import annotations

import asyncio
import logging

import httpx
from aiohttp import web

from bridge.adapter import Health, HttpRoute
from bridge.app import Bridge
from bridge.store.sqlite import SqliteStore
from tests.conftest import RecordingConsole, make_config
from tests.fakes.base import eventually
from tests.ops.conftest import value


class ConsoleWithWebhook(RecordingConsole):
    """A console whose health the test sets, serving one webhook route."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.state = Health(True, "reading stdin")
        self.hooks: list[bytes] = []

    def routes(self):
        async def hook(request: web.Request) -> web.Response:
            self.hooks.append(await request.read())
            return web.Response(text="ok")

        return [HttpRoute("POST", "/console/webhook", hook)]

    def health(self) -> Health:
        return self.state


class HangingStore(SqliteStore):
    async def ping(self) -> None:
        await asyncio.Event().wait()  # a store that accepts the connection and never answers


def http_config(**http) -> dict:
    return {
        "backends": {"echo": {"type": "echo"}},
        "http": {"enabled": True, "port": 0, "watch_interval": 0, **http},
    }


async def start(config, *adapters, store=None) -> tuple[Bridge, httpx.AsyncClient]:
    bridge = Bridge(config, list(adapters), store=store)
    await bridge.start()
    assert bridge.http is not None
    return bridge, httpx.AsyncClient(base_url=f"http://127.0.0.1:{bridge.http.port}")


async def test_health_readiness_metrics_and_webhook_on_one_port():
    console = ConsoleWithWebhook(user="ann")
    bridge, client = await start(make_config(http_config()), console)
    try:
        health = await client.get("/healthz")
        assert health.status_code == 200 and health.json() == {"status": "ok"}

        ready = await client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json() == {
            "ready": True,
            "components": {
                "store": {"ready": True, "detail": "sqlite"},
                "console": {"ready": True, "detail": "reading stdin"},
            },
            "backends": {"echo": {"circuit": "closed"}},
        }

        await console.say("hi")
        await console.replies(1)
        metrics = await client.get("/metrics")
        assert metrics.headers["content-type"].startswith("text/plain; version=")
        page = metrics.text
        assert value(page, "botbridge_messages_total", platform="console", outcome="answered") == 1
        assert value(page, "botbridge_adapter_connected", platform="console") == 1
        assert value(page, "botbridge_open_sessions") == 1  # noted, for /forget and expiry

        hook = await client.post("/console/webhook", content=b"{}")
        assert hook.status_code == 200 and console.hooks == [b"{}"]
    finally:
        await client.aclose()
        await bridge.stop()


async def test_readiness_turns_red_with_the_adapter_and_the_change_is_logged(caplog):
    caplog.set_level(logging.INFO, logger="bridge.http")
    console = ConsoleWithWebhook(user="ann")
    console.state = Health(False, "connecting")
    bridge, client = await start(make_config(http_config(watch_interval=0.02)), console)
    try:
        await eventually(lambda: "console is not ready yet: connecting" in caplog.text, 2)
        console.state = Health(True, "reading stdin")
        await eventually(lambda: "console is ready: reading stdin" in caplog.text, 2)
        console.state = Health(False, "no getUpdates answer for 12s")
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        body = ready.json()
        assert body["ready"] is False
        assert body["components"]["console"] == {
            "ready": False,
            "detail": "no getUpdates answer for 12s",
        }
        assert body["components"]["store"]["ready"] is True
        await eventually(lambda: "console is not ready: no getUpdates" in caplog.text, 2)
        metrics = (await client.get("/metrics")).text
        assert value(metrics, "botbridge_adapter_connected", platform="console") == 0

        console.state = Health(True, "polling")
        assert (await client.get("/readyz")).status_code == 200
        await eventually(lambda: "console is ready again: polling" in caplog.text, 2)
    finally:
        await client.aclose()
        await bridge.stop()


async def test_a_hanging_store_makes_readyz_answer_503_in_time():
    config = make_config(http_config(readiness_timeout=0.2))
    store = HangingStore(":memory:")
    bridge, client = await start(config, store=store)
    try:
        ready = await client.get("/readyz", timeout=5)
        assert ready.status_code == 503
        assert ready.json()["detail"] == "readiness check took longer than 0.2s"
        assert (await client.get("/healthz")).status_code == 200  # alive, just not ready
    finally:
        await client.aclose()
        await bridge.stop()


async def test_a_port_in_use_fails_start_cleanly():
    first, client = await start(make_config(http_config()))
    try:
        second = Bridge(make_config(http_config(port=first.http.port)), [])
        try:
            await second.start()
            raise AssertionError("two servers bound the same port")
        except OSError:
            pass
        await second.stop()  # nothing left running, nothing raised
    finally:
        await client.aclose()
        await first.stop()
