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
current reactions in `reactions`, Socket Mode acknowledgements in `acks`. A channel's history
(`add_message`) is served by conversations.replies, people (`users`) by users.info, and files
(`add_file`) at their `url_private`, which requires the bot token; each download is recorded in
`downloads` with how many bytes went out and whether the client read them all.

Streamed answers: chat.startStream / appendStream / stopStream (a streamed message is in `posted`
with its `markdown` growing and `streaming` true until stopped; in a channel a stream needs
`recipient_user_id` and `recipient_team_id`), chat.update (recorded in `updates`) and
assistant.threads.setStatus (recorded in `statuses`). `streams_supported = False` answers the
stream methods `unknown_method`; `expire_streams()` ends every open stream the way Slack does
after about 5 minutes (`message_not_in_streaming_state`).

Like Slack, a message's `metadata` is kept and returned by `conversations.history` (newest first)
and `conversations.replies` (a thread's parent, then its replies, oldest first) only with
`include_all_metadata`; both page with `limit` and `cursor`. `missing_history_scope = True` makes
them fail with `missing_scope`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from dataclasses import dataclass
from typing import Any

from aiohttp import WSMsgType, web

from .base import FakeServer, eventually
from .slack_events import (
    APP_TOKEN,
    BOT_TOKEN,
    BOT_USER_ID,
    SIGNING_SECRET,
    TEAM_ID,
    SlackEvents,
    channel_message,
    event_callback,
    ids,
    im,
    mention,
    new_ts,
    signature,
)

__all__ = [
    "APP_TOKEN",
    "BOT_TOKEN",
    "BOT_USER_ID",
    "SIGNING_SECRET",
    "TEAM_ID",
    "FakeSlack",
    "SlackEvents",
    "channel_message",
    "event_callback",
    "im",
    "mention",
    "signature",
]

_CHUNK = 64 * 1024


@dataclass
class Download:
    path: str
    sent: int = 0  # bytes written before the client stopped reading
    complete: bool = False


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
        record: bool = True,
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
        self.history: dict[tuple[str, str], dict[str, Any]] = {}  # (channel, ts) -> message
        self.users: dict[str, dict[str, Any]] = {}  # user id -> users.info's user
        self.files: dict[str, bytes] = {}  # path -> bytes
        self.downloads: list[Download] = []
        self.files_read = True  # False: the app lacks files:read (Slack shows its sign-in page)
        self.updates: list[dict[str, Any]] = []
        self.statuses: list[dict[str, Any]] = []
        self.streams_supported = True
        self.missing_history_scope = False
        self._ts = itertools.count(1)
        super().__init__(record=record)

    def setup(self, app: web.Application) -> None:
        app.router.add_post("/api/{method}", self._api)
        app.router.add_get("/api/{method}", self._api)  # slack_sdk reads some with GET
        app.router.add_get("/link", self._socket)
        app.router.add_get("/files-pri/{path:.+}", self._file)

    # ------------------------------------------------------------------------------ content

    def add_message(
        self, channel: str, text: str, *, user: str = "U099", profile: str | None = None
    ) -> str:
        """A message already in `channel` (posted before, or not for the bot); returns its ts.
        `profile`: the display name Slack puts in the message's `user_profile`."""
        ts = new_ts()
        message: dict[str, Any] = {"type": "message", "user": user, "text": text, "ts": ts}
        if profile:
            message["user_profile"] = {"display_name": profile, "real_name": profile}
        self.history[(channel, ts)] = message
        return ts

    def add_user(self, user: str, display_name: str) -> None:
        self.users[user] = {"id": user, "name": display_name.lower(),
                            "profile": {"display_name": display_name, "real_name": display_name}}  # fmt: skip

    def add_file(
        self, data: bytes, *, name: str = "picture.png", mimetype: str = "image/png",
        stated_size: int | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """A file as an event's `files` lists it; served at `url_private` with the bot token.
        `stated_size`: the size the file object states (default the real one; -1: none)."""
        file_id = f"F{next(ids):06d}"
        path = f"/files-pri/{TEAM_ID}-{file_id}/{name}"
        self.files[path] = data
        found: dict[str, Any] = {
            "id": file_id, "name": name, "mimetype": mimetype, "filetype": name.rsplit(".")[-1],
            "url_private": f"{self.url}{path}", "url_private_download": f"{self.url}{path}",
        }  # fmt: skip
        size = len(data) if stated_size is None else stated_size
        if size >= 0:
            found["size"] = size
        return found

    async def _file(self, request: web.Request) -> web.StreamResponse:
        token_ok = request.headers.get("Authorization") == f"Bearer {self.bot_token}"
        if not (token_ok and self.files_read):
            # Slack answers a request without the token with its sign-in page.
            return web.Response(status=200, text="<html>sign in</html>", content_type="text/html")
        data = self.files.get(request.path)
        if data is None:
            return web.Response(status=404, text="not found")
        download = Download(request.path)
        self.downloads.append(download)
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        await response.prepare(request)
        try:
            for start in range(0, len(data), _CHUNK):
                await response.write(data[start : start + _CHUNK])
                download.sent += len(data[start : start + _CHUNK])
                await asyncio.sleep(0)  # let a client that stops reading be noticed
            await response.write_eof()
        except (ConnectionResetError, asyncio.CancelledError):
            return response
        download.complete = True
        return response

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
        if request.method == "GET":
            args = {}
        elif request.content_type == "application/json":
            args = await request.json()
        elif request.method == "POST":
            args = dict(await request.post())
        else:
            args = {}
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
            "conversations.history": self._history,
            "conversations.replies": self._replies,
            "users.info": self._users_info,
            "chat.startStream": self._start_stream,
            "chat.appendStream": self._append_stream,
            "chat.stopStream": self._stop_stream,
            "chat.update": self._update,
            "assistant.threads.setStatus": self._set_status,
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
        message = {**args, "ts": ts, "user": self.identity["user_id"], "bot_id": "B0BOT",
                   "at": asyncio.get_running_loop().time()}  # fmt: skip
        if isinstance(message.get("metadata"), str):  # form-encoded: a JSON string
            message["metadata"] = json.loads(message["metadata"])
        self.posted.append(message)
        self.history[(str(args["channel"]), ts)] = {
            "type": "message", "user": self.identity["user_id"], "bot_id": self.identity["bot_id"],
            "text": args.get("text", ""), "ts": ts,
            **({"thread_ts": args["thread_ts"]} if args.get("thread_ts") else {}),
        }  # fmt: skip
        return web.json_response({"ok": True, "channel": args["channel"], "ts": ts})

    async def _users_info(self, args: dict[str, Any]) -> web.Response:
        found = self.users.get(str(args.get("user")))
        if found is None:
            return _error("user_not_found")
        return web.json_response({"ok": True, "user": found})

    def _message(self, channel: str, ts: str) -> dict[str, Any] | None:
        found = [m for m in self.posted if m["channel"] == channel and m["ts"] == ts]
        return found[0] if found else None

    async def _start_stream(self, args: dict[str, Any]) -> web.Response:
        if not self.streams_supported:
            return _error("unknown_method")
        if not args.get("channel") or not args.get("thread_ts"):
            return _error("invalid_arguments")
        in_channel = not str(args["channel"]).startswith("D")
        if in_channel and not (args.get("recipient_user_id") and args.get("recipient_team_id")):
            return _error("missing_recipient_user_id")
        ts = f"{1_700_000_000 + next(self._ts)}.000100"
        self.posted.append({"channel": args["channel"], "thread_ts": args["thread_ts"], "ts": ts,
                            "markdown": args.get("markdown_text", ""), "streaming": True,
                            "at": asyncio.get_running_loop().time()})  # fmt: skip
        return web.json_response({"ok": True, "channel": args["channel"], "ts": ts})

    async def _append_stream(self, args: dict[str, Any]) -> web.Response:
        if not self.streams_supported:
            return _error("unknown_method")
        message = self._message(args.get("channel", ""), args.get("ts", ""))
        if message is None:
            return _error("message_not_found")
        if not message.get("streaming"):
            return _error("message_not_in_streaming_state")
        message["markdown"] += args.get("markdown_text", "")
        return web.json_response({"ok": True, "channel": message["channel"], "ts": message["ts"]})

    async def _stop_stream(self, args: dict[str, Any]) -> web.Response:
        message = self._message(args.get("channel", ""), args.get("ts", ""))
        if message is None:
            return _error("message_not_found")
        if not message.get("streaming"):
            return _error("message_not_in_streaming_state")
        message["streaming"] = False
        message["markdown"] += args.get("markdown_text", "") or ""
        return web.json_response({"ok": True, "channel": message["channel"], "ts": message["ts"]})

    def expire_streams(self) -> None:
        for message in self.posted:
            if message.get("streaming"):
                message["streaming"] = False

    async def _update(self, args: dict[str, Any]) -> web.Response:
        message = self._message(args.get("channel", ""), args.get("ts", ""))
        if message is None:
            return _error("message_not_found")
        if message.get("streaming"):
            return _error("message_is_streaming")
        message["text"] = args.get("text", "")
        if args.get("blocks") == []:
            message.pop("markdown", None)  # the streamed content is replaced by the text
        self.updates.append({"ts": message["ts"], "text": message["text"],
                             "at": asyncio.get_running_loop().time()})  # fmt: skip
        return web.json_response({"ok": True, "channel": message["channel"], "ts": message["ts"]})

    async def _set_status(self, args: dict[str, Any]) -> web.Response:
        self.statuses.append(dict(args))
        return web.json_response({"ok": True})

    def _listed(self, messages: list[dict[str, Any]], args: dict[str, Any]) -> web.Response:
        if self.missing_history_scope:
            return _error("missing_scope")
        keep_metadata = str(args.get("include_all_metadata", "")).lower() in ("1", "true")
        start = int(args.get("cursor") or 0)
        limit = int(args.get("limit") or 100)
        page = messages[start : start + limit]
        fields = ("type", "ts", "text", "user", "user_profile", "bot_id", "thread_ts")
        shown = [
            {k: v for k, v in m.items() if k in fields}
            | ({"metadata": m["metadata"]} if keep_metadata and "metadata" in m else {})
            for m in page
        ]
        more = start + limit < len(messages)
        meta = {"next_cursor": str(start + limit) if more else ""}
        return web.json_response({"ok": True, "messages": shown, "has_more": more,
                                  "response_metadata": meta})  # fmt: skip

    def _in(self, channel: Any) -> dict[str, dict[str, Any]]:
        """Every message of `channel` by ts: those added by the test and the bot's own."""
        found = {ts: m for (c, ts), m in self.history.items() if c == channel}
        found.update((m["ts"], m) for m in self.posted if m["channel"] == channel)
        return found

    async def _history(self, args: dict[str, Any]) -> web.Response:
        messages = [m for m in self._in(args.get("channel")).values() if not m.get("thread_ts")]
        return self._listed(sorted(messages, key=lambda m: m["ts"], reverse=True), args)

    async def _replies(self, args: dict[str, Any]) -> web.Response:
        """A thread: its parent (when known), then its replies, oldest first."""
        known, thread = self._in(args.get("channel")), str(args.get("ts"))
        replies = sorted(
            (m for m in known.values() if m.get("thread_ts") == thread and m["ts"] != thread),
            key=lambda m: m["ts"],
        )
        parent = known.get(thread)
        if parent is None and not replies:
            return _error("thread_not_found")
        return self._listed([parent, *replies] if parent else replies, args)

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
        url = f"ws://127.0.0.1:{self.port}/link?ticket=t{next(ids)}"
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
        envelope_id = envelope_id or f"env-{next(ids)}"
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
