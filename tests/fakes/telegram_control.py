"""The fake Telegram's control API for tests that run it as a subprocess (JSON in, JSON out):
push updates, read what the bot called and posted, switch faults on and off. Never recorded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from .telegram_api import FakeTelegram


def add_routes(app: web.Application, fake: FakeTelegram) -> None:
    async def _t_updates(request: web.Request) -> web.Response:
        body = await request.json()
        ids = await fake.push(*(body if isinstance(body, list) else [body]))
        return web.json_response({"update_ids": ids})

    async def _t_calls(request: web.Request) -> web.Response:
        calls = fake.api_calls(request.query.get("method"))
        return web.json_response(
            {"calls": [{"method": c.method, "params": c.params} for c in calls]}
        )

    async def _t_sent(request: web.Request) -> web.Response:
        return web.json_response({"sent": fake.sent})

    async def _t_stall(request: web.Request) -> web.Response:
        fake.stalled = bool((await request.json()).get("on", True))
        return web.json_response({"stalled": fake.stalled})

    async def _t_conflict(request: web.Request) -> web.Response:
        fake.conflict = bool((await request.json()).get("on", True))
        return web.json_response({"conflict": fake.conflict})

    async def _t_fail(request: web.Request) -> web.Response:
        body = await request.json()
        extra = {"retry_after": body["retry_after"]} if body.get("retry_after") else {}
        fake.fail_method(
            body["method"],
            int(body["status"]),
            body.get("description", "error"),
            times=int(body.get("times", 1)),
            **extra,
        )
        return web.json_response({"ok": True})

    app.router.add_post("/_test/updates", _t_updates)
    app.router.add_get("/_test/calls", _t_calls)
    app.router.add_get("/_test/sent", _t_sent)
    app.router.add_post("/_test/stall", _t_stall)
    app.router.add_post("/_test/conflict", _t_conflict)
    app.router.add_post("/_test/fail", _t_fail)
