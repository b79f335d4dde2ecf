"""A fake Telegram Bot API server: getMe, getUpdates (long polling, offsets), set/deleteWebhook,
getWebhookInfo, sendMessage, sendMessageDraft, sendChatAction, editMessageText, getFile on
`/bot{token}/{method}` and file downloads on `/file/bot{token}/{path}` like the real one, so
python-telegram-bot talks to it through `base_url=f"{fake.url}/bot"` and
`base_file_url=f"{fake.url}/file/bot"`.

It answers the way Telegram does where tests depend on it: a text over 4096 UTF-16 units is
`400 message is too long`, an unknown chat `400 chat not found`, getUpdates while a webhook is set
`409 Conflict`, a getUpdates still waiting when another one arrives `409 Conflict: terminated by
other getUpdates request` (two pollers on one token), a wrong token `401 Unauthorized`; errors are `{"ok": false, "error_code",
"description", "parameters"}`. Faults: `rate_limit_next` (429 retry_after), `reject_entities_next`
(400 can't parse entities), `forbid_chat` (403, bot kicked), `fail_method` (any status, e.g.
502), `conflict` (another poller), `stalled` (getUpdates never answers: a black-holed
connection), `hold`/`release` (a method's calls wait, in flight, until released), the
periodic `fail_every` (every n-th call of a method refused, e.g. 502) and `drop_every` (every
n-th request's connection closed unanswered), plus FakeServer's `slow_next` / `drop_next` /
`malformed_next`.

In-process: `fake.push(update)` queues an update (`dm()`, `group_message()`, `user()`,
`group()` build them, with the entities Telegram would add; `with_picture()` turns one into a
photo or an image file served by getFile); `fake.sent` is every message the bot posted;
`fake.api_calls("sendMessage")` the parsed requests; `fake.downloads` every file path fetched.
Streamed answers: `fake.drafts` records every sendMessageDraft (private chats only, like
Telegram; `drafts_supported = False` makes the method unknown, as on an older Bot API server),
`fake.edits` every editMessageText that changed a message (an edit that changes nothing is
`400 message is not modified`, like Telegram's).

Standalone, for subprocess tests: `python -m tests.fakes.telegram_api --port N [--token T]
[--username U]` serves on 127.0.0.1:N until killed (prints `ready http://127.0.0.1:N` on stdout).
Control API (JSON in, JSON out):
    POST /_test/updates   an update, or a list of them; update_id/message_id/date/entities are
                          filled in when missing  → {"update_ids": [...]}
    GET  /_test/calls     every Bot API request as {"method", "params"}; ?method=sendMessage
    GET  /_test/sent      every message the bot posted (Telegram Message objects)
    POST /_test/stall     {"on": true|false}: stop/resume answering getUpdates
    POST /_test/fail      {"method", "status", "description", "retry_after"?, "times"?}
    POST /_test/conflict  {"on": true|false}: getUpdates answers 409 (another poller)
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import time
from typing import Any

from aiohttp import web

from . import telegram_control
from .base import Call, FakeServer
from .telegram_objects import (
    ApiCall,
    ApiError,
    auto_entities,
    group,
    params_of,
    user,
    utf16_len,
)

__all__ = ["TOKEN", "ApiCall", "ApiError", "FakeTelegram", "group", "user", "utf16_len"]

TOKEN = "123456:TEST-fake-telegram-token"
MAX_TEXT = 4096


class FakeTelegram(FakeServer):
    def __init__(
        self,
        token: str = TOKEN,
        *,
        bot_id: int = 7000001,
        username: str = "bridge_bot",
        privacy: bool = True,
        record: bool = True,
    ) -> None:
        self.token = token
        self.bot = user(bot_id, "Bridge", username=username, is_bot=True)
        self.privacy = privacy
        self.updates: list[dict[str, Any]] = []  # not yet confirmed by an offset
        self.sent: list[dict[str, Any]] = []  # every message the bot posted, in order
        self.chats: dict[int, dict[str, Any]] = {}
        self.webhook: dict[str, Any] = {}
        self.stalled = False
        self.conflict = False
        self._polls = 0  # getUpdates calls so far: a newer one ends a waiting older one
        self.terminated = 0  # long polls ended by a newer one, 409 (two processes polling)
        self.forbidden: set[int] = set()
        self.files: dict[str, dict[str, Any]] = {}  # file_id -> getFile's File, plus the bytes
        self.downloads: list[str] = []  # file paths downloaded, in order
        self.drafts: list[dict[str, Any]] = []  # every draft shown, in order
        self.sent_at: list[float] = []  # loop time of each message in `sent`
        self.edits: list[dict[str, Any]] = []  # every edit that changed a message
        self.drafts_supported = True
        self._held: dict[str, asyncio.Event] = {}  # methods answered only once released
        self._fail_every: dict[str, tuple[int, int]] = {}  # method → (every n-th, status)
        self._drop_every = 0  # every n-th Bot API request: connection closed unanswered
        self._counts: dict[str, int] = {}
        self.injected = {"failed": 0, "dropped": 0}
        self._update_ids = itertools.count(1000)
        self._message_ids = itertools.count(1)
        self._arrived = asyncio.Condition()
        super().__init__(record=record)

    def setup(self, app: web.Application) -> None:
        app.router.add_route("*", "/bot{token}/{method}", self._api)
        app.router.add_get("/file/bot{token}/{path:.+}", self._file)
        telegram_control.add_routes(app, self)

    @property
    def base_url(self) -> str:
        return f"{self.url}/bot"

    @property
    def file_url(self) -> str:
        return f"{self.url}/file/bot"

    async def start(self, port: int = 0) -> FakeTelegram:  # type: ignore[override]
        await self.start_on(port)
        return self

    # ------------------------------------------------------------------------- building updates

    def message(
        self,
        chat: dict[str, Any],
        sender: dict[str, Any],
        text: str,
        *,
        reply_to: dict[str, Any] | None = None,
        quote: str | None = None,
        thread_id: int | None = None,
        entities: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        self.chats[chat["id"]] = chat
        message: dict[str, Any] = {
            "message_id": next(self._message_ids),
            "date": int(time.time()),
            "chat": chat,
            "from": sender,
            "text": text,
        }
        found = auto_entities(text) if entities is None else entities
        if found:
            message["entities"] = found
        if reply_to is not None:
            message["reply_to_message"] = reply_to
        if quote is not None:  # the part of the replied-to message the user picked
            message["quote"] = {"text": quote, "position": 0, "is_manual": True}
        if thread_id is not None:
            message["message_thread_id"] = thread_id
            message["is_topic_message"] = True
        return {"message": message}

    def dm(self, sender: dict[str, Any], text: str, **kwargs: Any) -> dict[str, Any]:
        chat = {"id": sender["id"], "type": "private", "first_name": sender["first_name"]}
        return self.message(chat, sender, text, **kwargs)

    def group_message(
        self, chat: dict[str, Any], sender: dict[str, Any], text: str, **kwargs: Any
    ) -> dict[str, Any]:
        return self.message(chat, sender, text, **kwargs)

    def with_picture(
        self,
        update: dict[str, Any],
        data: bytes,
        *,
        document: str | None = None,
        stated_size: int | None = None,
    ) -> dict[str, Any]:
        """The message of `update` turned into a photo (or, with `document` as its mime type, an
        image sent as a file) of `data`, its text becoming the caption. `stated_size` is the size
        Telegram states (default: the real one; 0: none stated anywhere)."""
        file_id = f"file-{len(self.files) + 1}"
        size = len(data) if stated_size is None else stated_size
        path = f"{'documents' if document else 'photos'}/{file_id}.bin"
        self.files[file_id] = {
            "file_id": file_id, "file_unique_id": f"u{file_id}", "file_path": path, "data": data,
            **({"file_size": size} if size else {}),
        }  # fmt: skip
        message = dict(update["message"])
        caption = message.pop("text", "")
        entities = message.pop("entities", None)
        if caption:
            message["caption"] = caption
            if entities:
                message["caption_entities"] = entities
        stated = {"file_size": size} if size else {}
        if document:
            message["document"] = {"file_id": file_id, "file_unique_id": f"u{file_id}",
                                   "file_name": "picture", "mime_type": document, **stated}  # fmt: skip
        else:
            message["photo"] = [
                {"file_id": f"{file_id}-thumb", "file_unique_id": "t", "width": 90, "height": 90},
                {"file_id": file_id, "file_unique_id": f"u{file_id}", "width": 800,
                 "height": 600, **stated},
            ]  # fmt: skip
        return {**update, "message": message}

    def complete(self, update: dict[str, Any]) -> dict[str, Any]:
        update = dict(update)
        update.setdefault("update_id", next(self._update_ids))
        for kind in ("message", "edited_message", "channel_post"):
            message = update.get(kind)
            if isinstance(message, dict):
                message = dict(message)
                message.setdefault("message_id", next(self._message_ids))
                message.setdefault("date", int(time.time()))
                if "text" in message and "entities" not in message:
                    if found := auto_entities(message["text"]):
                        message["entities"] = found
                if "chat" in message:
                    self.chats.setdefault(message["chat"]["id"], message["chat"])
                update[kind] = message
        return update

    async def push(self, *updates: dict[str, Any]) -> list[int]:
        """Queue updates for getUpdates, all at once; returns their update ids."""
        done = [self.complete(u) for u in updates]
        async with self._arrived:
            self.updates.extend(done)
            self._arrived.notify_all()
        return [u["update_id"] for u in done]

    # ------------------------------------------------------------------------- faults

    def fail_method(
        self, method: str, status: int, description: str, *, times: int = 1, **parameters: Any
    ) -> None:
        body = ApiError(status, description, **parameters).body()
        self.fail_next(status, times=times, path=f"/bot{self.token}/{method}", body=body)

    def rate_limit_next(self, method: str = "sendMessage", retry_after: int = 1) -> None:
        self.fail_method(
            method, 429, f"Too Many Requests: retry after {retry_after}", retry_after=retry_after
        )

    def reject_entities_next(self, method: str = "sendMessage") -> None:
        self.fail_method(
            method,
            400,
            "Bad Request: can't parse entities: Can't find end of "
            "the entity starting at byte offset 3",
        )

    def forbid_chat(self, chat_id: int) -> None:
        self.forbidden.add(chat_id)

    def hold(self, method: str) -> None:
        """Receive calls of `method` but answer none until `release`: a request the test can
        be sure is in flight."""
        self._held.setdefault(method, asyncio.Event())

    def release(self, method: str) -> None:
        held = self._held.pop(method, None)
        if held is not None:
            held.set()

    def fail_every(self, method: str, nth: int, status: int = 502) -> None:
        """Refuse every `nth` call of `method` with `status`, for as long as the test runs."""
        self._fail_every[method] = (nth, status)

    def drop_every(self, nth: int) -> None:
        """Close the connection of every `nth` Bot API request after reading it, unanswered
        and not acted on (the client cannot know that: for it, the request may have arrived)."""
        self._drop_every = nth

    def _periodic_fault(self, request: web.Request, method: str) -> web.Response | None:
        count = self._counts[method] = self._counts.get(method, 0) + 1
        total = self._counts["*"] = self._counts.get("*", 0) + 1
        if self._drop_every and total % self._drop_every == 0:
            self.injected["dropped"] += 1
            assert request.transport is not None
            request.transport.abort()
            raise asyncio.CancelledError  # aiohttp drops the handler quietly
        nth, status = self._fail_every.get(method, (0, 0))
        if nth and count % nth == 0:
            self.injected["failed"] += 1
            error = ApiError(status, "Bad Gateway" if status == 502 else "Internal Server Error")
            return web.json_response(error.body(), status=status)
        return None

    # ------------------------------------------------------------------------- inspecting

    def api_calls(self, method: str | None = None) -> list[ApiCall]:
        prefix = f"/bot{self.token}/"
        found = []
        for call in self.calls:
            if call.path.startswith(prefix):
                name = call.path[len(prefix) :]
                if method is None or name == method:
                    found.append(ApiCall(name, params_of(call)))
        return found

    def texts(self, chat_id: int | None = None) -> list[str]:
        return [m["text"] for m in self.sent if chat_id is None or m["chat"]["id"] == chat_id]

    async def wait_sent(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        await self.wait_for(lambda calls: len(self.sent) >= count, timeout)
        return self.sent

    # ------------------------------------------------------------------------- the Bot API

    async def _api(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.json_response(ApiError(401, "Unauthorized").body(), status=401)
        method = request.match_info["method"]
        handler = getattr(self, f"_m_{method}", None)
        if handler is None:
            return web.json_response(ApiError(404, "Not Found").body(), status=404)
        if (held := self._held.get(method)) is not None:
            await held.wait()
        if self._fail_every or self._drop_every:
            if (refused := self._periodic_fault(request, method)) is not None:
                return refused
        body = await request.read()  # already read (and cached) by the recording middleware
        call = Call(request.method, request.path, dict(request.query), dict(request.headers), body)
        params = params_of(call)
        try:
            result = await handler(params)
        except ApiError as exc:
            return web.json_response(exc.body(), status=exc.code)
        return web.json_response({"ok": True, "result": result})

    async def _m_getMe(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            **self.bot,
            "can_join_groups": True,
            "can_read_all_group_messages": not self.privacy,
            "supports_inline_queries": False,
        }

    async def _m_getUpdates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        if self.webhook.get("url"):
            raise ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is "
                "active; use deleteWebhook to delete the webhook first",
            )
        if self.conflict:
            raise ApiError(
                409,
                "Conflict: terminated by other getUpdates request; make sure "
                "that only one bot instance is running",
            )
        await self._hang_if_stalled()
        self._polls += 1
        mine = self._polls
        offset = int(params.get("offset") or 0)
        if offset > 0:  # confirms every update before it
            self.updates = [u for u in self.updates if u["update_id"] >= offset]
        wanted = params.get("allowed_updates") or None
        deadline = time.monotonic() + float(params.get("timeout") or 0)
        async with self._arrived:
            self._arrived.notify_all()  # a long poll still waiting is ended by this one
            while True:
                if self._polls != mine:
                    self.terminated += 1
                    raise ApiError(
                        409,
                        "Conflict: terminated by other getUpdates request; make sure "
                        "that only one bot instance is running",
                    )
                ready = [
                    u
                    for u in self.updates
                    if u["update_id"] >= offset and (wanted is None or any(k in u for k in wanted))
                ]
                left = deadline - time.monotonic()
                if ready or left <= 0:
                    break
                try:
                    await asyncio.wait_for(self._arrived.wait(), left)
                except TimeoutError:
                    pass
        await self._hang_if_stalled()
        return ready[: int(params.get("limit") or 100)]

    async def _hang_if_stalled(self) -> None:
        if self.stalled:
            await asyncio.Event().wait()  # like a silently dropped connection: never answers

    async def _m_deleteWebhook(self, params: dict[str, Any]) -> bool:
        self.webhook = {}
        if params.get("drop_pending_updates"):
            self.updates.clear()
        return True

    async def _m_setWebhook(self, params: dict[str, Any]) -> bool:
        if not str(params.get("url", "")).startswith("https://"):
            raise ApiError(400, "Bad Request: bad webhook: An HTTPS URL must be provided")
        self.webhook = dict(params)
        return True

    async def _m_getWebhookInfo(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "url": self.webhook.get("url", ""),
            "has_custom_certificate": False,
            "pending_update_count": len(self.updates),
        }

    def _chat(self, params: dict[str, Any]) -> dict[str, Any]:
        chat_id = params.get("chat_id")
        if chat_id in self.forbidden:
            raise ApiError(403, "Forbidden: bot was kicked from the supergroup chat")
        if chat_id not in self.chats:
            raise ApiError(400, "Bad Request: chat not found")
        return self.chats[chat_id]

    def _check_text(self, text: str, entities: list[dict[str, Any]] | None) -> None:
        if not text.strip():
            raise ApiError(400, "Bad Request: message text is empty")
        if utf16_len(text) > MAX_TEXT:
            raise ApiError(400, "Bad Request: message is too long")
        for entity in entities or []:
            if entity["offset"] + entity["length"] > utf16_len(text):
                raise ApiError(400, "Bad Request: can't parse entities: entity out of bounds")

    async def _m_sendMessage(self, params: dict[str, Any]) -> dict[str, Any]:
        chat = self._chat(params)
        text = str(params.get("text", ""))
        self._check_text(text, params.get("entities"))
        message: dict[str, Any] = {
            "message_id": next(self._message_ids),
            "date": int(time.time()),
            "chat": chat,
            "from": self.bot,
            "text": text,
        }
        for key in ("entities", "parse_mode", "message_thread_id"):
            if key in params:
                message[key] = params[key]
        reply = params.get("reply_parameters") or {}
        if reply:
            message["reply_to"] = reply["message_id"]  # what the fake shows; not Telegram's shape
        self.sent.append(message)
        self.sent_at.append(asyncio.get_running_loop().time())
        return message

    async def _m_editMessageText(self, params: dict[str, Any]) -> dict[str, Any]:
        for message in self.sent:
            if (message["chat"]["id"], message["message_id"]) == (
                params.get("chat_id"),
                params.get("message_id"),
            ):
                self._check_text(str(params.get("text", "")), params.get("entities"))
                entities = params.get("entities")
                if params["text"] == message["text"] and entities == message.get("entities"):
                    raise ApiError(
                        400,
                        "Bad Request: message is not modified: specified new message content "
                        "and reply markup are exactly the same as a current content and reply "
                        "markup of the message",
                    )
                message["text"] = params["text"]
                if entities:
                    message["entities"] = entities
                else:
                    message.pop("entities", None)
                self.edits.append({"chat_id": params["chat_id"], "message_id": message["message_id"],
                                   "text": params["text"], "entities": entities,
                                   "at": asyncio.get_running_loop().time()})  # fmt: skip
                return message
        raise ApiError(400, "Bad Request: message to edit not found")

    async def _m_sendMessageDraft(self, params: dict[str, Any]) -> bool:
        if not self.drafts_supported:
            raise ApiError(404, "Not Found")
        chat = self._chat(params)
        if chat.get("type") != "private":
            raise ApiError(400, "Bad Request: TEXTDRAFT_PEER_INVALID")
        if not params.get("draft_id"):
            raise ApiError(400, "Bad Request: draft_id must be non-zero")
        text = str(params.get("text") or "")
        if text:
            self._check_text(text, params.get("entities"))
        self.drafts.append({"chat_id": params["chat_id"], "draft_id": params["draft_id"],
                            "text": text, "entities": params.get("entities"),
                            "message_thread_id": params.get("message_thread_id"),
                            "at": asyncio.get_running_loop().time()})  # fmt: skip
        return True

    async def _m_sendChatAction(self, params: dict[str, Any]) -> bool:
        self._chat(params)
        return True

    async def _m_getFile(self, params: dict[str, Any]) -> dict[str, Any]:
        found = self.files.get(str(params.get("file_id")))
        if found is None:
            raise ApiError(400, "Bad Request: invalid file_id")
        return {k: v for k, v in found.items() if k != "data"}

    async def _file(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.json_response(ApiError(401, "Unauthorized").body(), status=401)
        path = request.match_info["path"]
        for found in self.files.values():
            if found["file_path"] == path:
                self.downloads.append(path)
                return web.Response(body=found["data"], content_type="application/octet-stream")
        return web.json_response(ApiError(404, "Not Found").body(), status=404)

    # ------------------------------------------------------------------------- control API

    @web.middleware
    async def _record_and_inject(self, request: web.Request, handler) -> web.StreamResponse:
        if request.path.startswith("/_test/"):
            return await handler(request)  # the control API is neither recorded nor faulted
        return await super()._record_and_inject(request, handler)


async def _serve(port: int, token: str, username: str) -> None:
    server = await FakeTelegram(token, username=username).start(port)
    print(f"ready {server.url}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="A fake Telegram Bot API server for tests.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token", default=TOKEN)
    parser.add_argument("--username", default="bridge_bot")
    args = parser.parse_args()
    try:
        asyncio.run(_serve(args.port, args.token, args.username))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
