"""A fake Slack: the Web API methods the adapter calls, a Socket Mode websocket, and the Events
API side that signs and POSTs events to the bridge the way Slack does.

    slack = FakeSlack()                          # auth.test, chat.postMessage, reactions.*,
    await slack.start()                          # apps.connections.open under /api/
    envelope = await slack.push(im("hi"))        # over the socket; await slack.wait_ack(envelope)
    events = SlackEvents(f"http://127.0.0.1:{port}/slack/events", SECRET)
    response = await events.post(im("hi"), retry_num=1)
    slack.ratelimit_next("/api/chat.postMessage", retry_after=1)   # HTTP 429 ratelimited
    slack.error_next("/api/reactions.add", "already_reacted")        # HTTP 200, ok: false

Every request is recorded (`calls`, and parsed as `api_calls`); messages posted are in `posted`,
current reactions in `reactions`, Socket Mode acknowledgements in `acks`.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
from typing import Any

import httpx
from aiohttp import WSMsgType, web

from .base import FakeServer, eventually

BOT_TOKEN = "xoxb-test-bot-token-0123456789"
APP_TOKEN = "xapp-test-app-token-0123456789"
SIGNING_SECRET = "test-signing-secret-0123456789abcdef"
TEAM_ID = "T024"
BOT_USER_ID = "UBOT"

_ids = itertools.count(1)


class FakeSlack(FakeServer):
    def __init__(
        self,
        *,
        bot_token: str = BOT_TOKEN,
        app_token: str = APP_TOKEN,
        team_id: str = TEAM_ID,
        team: str = "Acme",
        bot_user_id: str = BOT_USER_ID,
        bot_user: str = "botbridge",
    ) -> None:
        self.bot_token = bot_token
        self.app_token = app_token
        self.identity = {
            "url": "https://acme.slack.com/",
            "team": team,
            "user": bot_user,
            "team_id": team_id,
            "user_id": bot_user_id,
            "bot_id": "B0BOT",
            "is_enterprise_install": False,
        }
        self.api_calls: list[tuple[str, dict[str, Any]]] = []  # (method, arguments) in order
        self.posted: list[dict[str, Any]] = []
        self.reactions: set[tuple[str, str, str]] = set()  # (channel, timestamp, name)
        self.acks: dict[str, dict[str, Any]] = {}
        self.sockets: list[web.WebSocketResponse] = []
        self._ts = itertools.count(1)
        super().__init__()

    def setup(self, app: web.Application) -> None:
        app.router.add_post("/api/{method}", self._api)
        app.router.add_get("/link", self._socket)

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/"

    # ------------------------------------------------------------------------------ faults

    def ratelimit_next(self, path: str, *, retry_after: float = 1, times: int = 1) -> None:
        body = {"ok": False, "error": "ratelimited"}
        self.fail_next(429, path=path, retry_after=retry_after, body=body, times=times)

    def error_next(self, path: str, error: str, *, times: int = 1) -> None:
        """Slack's usual failure: HTTP 200 with `ok: false`."""
        self.fail_next(200, path=path, body={"ok": False, "error": error}, times=times)

    # ------------------------------------------------------------------------------ Web API

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if request.content_type == "application/json":
            args = await request.json()
        else:
            args = dict(await request.post())
        args.update(request.query)
        self.api_calls.append((method, {k: v for k, v in args.items() if k != "token"}))
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        token = token or str(args.pop("token", ""))
        wanted = self.app_token if method == "apps.connections.open" else self.bot_token
        if token != wanted:
            return _error("invalid_auth" if token else "not_authed")
        handler = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._post_message,
            "reactions.add": self._reaction_add,
            "reactions.remove": self._reaction_remove,
            "apps.connections.open": self._connections_open,
        }.get(method)
        if handler is None:
            return _error("unknown_method")
        return await handler(args)

    async def _auth_test(self, args: dict[str, Any]) -> web.Response:
        return web.json_response({"ok": True, **self.identity})

    async def _post_message(self, args: dict[str, Any]) -> web.Response:
        if not args.get("channel"):
            return _error("channel_not_found")
        if not args.get("text") and not args.get("blocks"):
            return _error("no_text")
        ts = f"{1_700_000_000 + next(self._ts)}.000100"
        message = {**args, "ts": ts}
        self.posted.append(message)
        return web.json_response({"ok": True, "channel": args["channel"], "ts": ts})

    async def _reaction_add(self, args: dict[str, Any]) -> web.Response:
        key = (args["channel"], args["timestamp"], args["name"])
        if key in self.reactions:
            return _error("already_reacted")
        self.reactions.add(key)
        return web.json_response({"ok": True})

    async def _reaction_remove(self, args: dict[str, Any]) -> web.Response:
        key = (args["channel"], args["timestamp"], args["name"])
        if key not in self.reactions:
            return _error("no_reaction")
        self.reactions.discard(key)
        return web.json_response({"ok": True})

    async def _connections_open(self, args: dict[str, Any]) -> web.Response:
        url = f"ws://127.0.0.1:{self.port}/link?ticket=t{next(_ids)}"
        return web.json_response({"ok": True, "url": url})

    # ------------------------------------------------------------------------------ Socket Mode

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.sockets.append(ws)
        await ws.send_json({"type": "hello", "num_connections": len(self.sockets)})
        try:
            async for message in ws:
                if message.type != WSMsgType.TEXT:
                    continue
                data = json.loads(message.data)
                if "envelope_id" in data:
                    self.acks[data["envelope_id"]] = data
        finally:
            self.sockets.remove(ws)
        return ws

    async def push(
        self,
        payload: dict[str, Any],
        *,
        retry_attempt: int = 0,
        retry_reason: str = "",
        envelope_id: str | None = None,
        timeout: float = 5.0,
        connection: int = -1,
    ) -> str:
        """Deliver an Events API payload over an open socket (the newest unless `connection`
        says which: Slack gives each event to one of an app's connections); its envelope id."""
        await eventually(lambda: len(self.sockets) > max(connection, -1), timeout)
        envelope_id = envelope_id or f"env-{next(_ids)}"
        await self.sockets[connection].send_json(
            {
                "envelope_id": envelope_id,
                "type": "events_api",
                "accepts_response_payload": False,
                "retry_attempt": retry_attempt,
                "retry_reason": retry_reason,
                "payload": payload,
            }
        )
        return envelope_id

    async def wait_ack(self, envelope_id: str, timeout: float = 5.0) -> dict[str, Any]:
        return await eventually(lambda: self.acks.get(envelope_id), timeout)

    def methods(self) -> list[str]:
        return [method for method, _ in self.api_calls]

    def args_of(self, method: str) -> list[dict[str, Any]]:
        return [args for name, args in self.api_calls if name == method]

    async def wait_posted(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        await eventually(lambda: len(self.posted) >= count, timeout)
        return self.posted


def _error(error: str) -> web.Response:
    return web.json_response({"ok": False, "error": error})


# ---------------------------------------------------------------------------------- events


def event_callback(event: dict[str, Any], *, event_id: str | None = None) -> dict[str, Any]:
    """The Events API envelope Slack POSTs (and wraps in a Socket Mode envelope)."""
    return {
        "token": "legacy-verification-token",
        "team_id": event.get("team", TEAM_ID),
        "api_app_id": "A0APP",
        "event": event,
        "type": "event_callback",
        "event_id": event_id or f"Ev{next(_ids):08d}",
        "event_time": int(time.time()),
        "authorizations": [
            {"team_id": TEAM_ID, "user_id": BOT_USER_ID, "is_bot": True, "enterprise_id": None}
        ],
    }


def _ts() -> str:
    return f"{int(time.time())}.{next(_ids):06d}"


def _message(channel_type: str, text: str, user: str, channel: str, extra: dict) -> dict[str, Any]:
    event = {"type": "message", "channel_type": channel_type, "user": user, "text": text}
    event.update({"channel": channel, "ts": _ts(), "team": TEAM_ID, **extra})
    return event_callback(event)


def im(text: str, *, user: str = "U012", channel: str = "D0IM", **extra: Any) -> dict[str, Any]:
    return _message("im", text, user, channel, extra)


def channel_message(
    text: str, *, user: str = "U012", channel: str = "C123", **extra: Any
) -> dict[str, Any]:
    return _message("channel", text, user, channel, extra)


def mention(
    text: str, *, user: str = "U012", channel: str = "C123", **extra: Any
) -> dict[str, Any]:
    """An app_mention; `text` should hold `<@UBOT>` as Slack sends it."""
    event = {"type": "app_mention", "user": user, "text": text, "channel": channel}
    event.update({"ts": _ts(), "team": TEAM_ID, **extra})
    event.setdefault("event_ts", event["ts"])
    return event_callback(event)


# ---------------------------------------------------------------------------------- HTTP side


def signature(secret: str, timestamp: int, body: str) -> str:
    """Slack's v0 request signature: HMAC-SHA256 over `v0:{timestamp}:{body}`."""
    base = f"v0:{timestamp}:{body}".encode()
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


class SlackEvents:
    """Slack's side of HTTP Events: signs each payload and POSTs it to the bridge."""

    def __init__(self, url: str, secret: str = SIGNING_SECRET) -> None:
        self.url = url
        self.secret = secret

    async def post(
        self,
        payload: dict[str, Any],
        *,
        retry_num: int | None = None,
        timestamp: int | None = None,
        secret: str | None = None,
        signed: bool = True,
    ) -> httpx.Response:
        body = json.dumps(payload)
        stamp = int(time.time()) if timestamp is None else timestamp
        headers = {"Content-Type": "application/json", "X-Slack-Request-Timestamp": str(stamp)}
        if signed:
            headers["X-Slack-Signature"] = signature(secret or self.secret, stamp, body)
        if retry_num is not None:
            headers["X-Slack-Retry-Num"] = str(retry_num)
            headers["X-Slack-Retry-Reason"] = "http_timeout"
        async with httpx.AsyncClient(timeout=5.0) as client:
            return await client.post(self.url, content=body, headers=headers)
