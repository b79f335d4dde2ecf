"""A fake NexusGPT public thread API, behaving as documented:

- `POST /api/public/thread` (optional `{"message"}`) → `{"id", "createdAt"}`;
- `POST /api/public/thread/{id}/messages` `{"content"}` → `{"success": true}`: the user message is
  listed at once, the assistant's answer appears `answer_delay` seconds later, in order (a thread
  answers its queued messages one after another). `hold = True` keeps answers back until
  `release()`, so a test decides exactly when a late answer lands;
- `GET /api/public/thread/{id}/messages?limit&order&after&before` lists them (a bare list, or
  wrapped in `envelope` when set);
- header `api-key` (401 otherwise); content over 4,000 characters is a 413; more than
  `messages_per_minute` messages per key within `window` seconds is a 429 with Retry-After; a
  thread idle for `idle_ttl` seconds, or expired with `expire()`, is a 404.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .base import FakeServer

Reply = Callable[[str, list[str]], str]
_REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    413: "Payload Too Large",
    429: "Too Many Requests",
}


@dataclass
class Thread:
    id: str
    messages: list[dict[str, Any]] = field(default_factory=list)
    last_active: float = 0.0
    answer_due: float = 0.0  # when the last queued answer lands (answers come in order)


class FakeNexusGPT(FakeServer):
    def __init__(
        self,
        *,
        api_key: str = "ngpt-key-1",
        answer_delay: float = 0.05,
        messages_per_minute: int = 60,
        window: float = 60.0,
        idle_ttl: float = 24 * 3600,
        envelope: str | None = None,
        tool_step: bool = False,
        reply: Reply = lambda content, earlier: f"echo: {content}",
    ) -> None:
        self.api_key = api_key
        self.answer_delay = answer_delay
        self.messages_per_minute = messages_per_minute
        self.window = window
        self.idle_ttl = idle_ttl
        self.envelope = envelope  # None (bare list), "data" or "messages"
        self.tool_step = tool_step  # a tool message before each answer
        self.reply = reply
        self.hold = False
        self.expire_before_next_post = False
        self.threads: dict[str, Thread] = {}
        self.rate_limited = 0  # 429s answered
        self._held: deque[tuple[Thread, str]] = deque()
        self._sent: deque[float] = deque()  # when recent messages arrived, for the rate limit
        self._ids = itertools.count(1)
        self._timers: list[asyncio.TimerHandle] = []
        super().__init__()

    def setup(self, app: web.Application) -> None:
        app.router.add_post("/api/public/thread", self._create)
        app.router.add_post("/api/public/thread/{id}/messages", self._send)
        app.router.add_get("/api/public/thread/{id}/messages", self._list)

    async def stop(self) -> None:
        for timer in self._timers:
            timer.cancel()
        await super().stop()

    # ------------------------------------------------------------------------------ controls

    def expire(self, thread_id: str | None = None) -> None:
        """Forget one thread (or all), as 24 h of idleness would."""
        for tid in [thread_id] if thread_id else list(self.threads):
            self.threads.pop(tid, None)

    def release(self, count: int | None = None) -> None:
        """Let `count` held answers (all if None) appear, oldest first."""
        for _ in range(len(self._held) if count is None else count):
            thread, content = self._held.popleft()
            self._land_answer(thread, content)

    def texts(self, thread_id: str) -> list[tuple[str, str]]:
        return [(m["type"], m["content"]) for m in self.threads[thread_id].messages]

    # ------------------------------------------------------------------------------ handlers

    def _error(self, status: int, message: str, **headers: str) -> web.Response:
        body = {"statusCode": status, "message": message, "error": _REASONS.get(status, "Error")}
        return web.json_response(body, status=status, headers=headers)

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("api-key") == self.api_key

    def _thread(self, request: web.Request) -> Thread | None:
        thread = self.threads.get(request.match_info["id"])
        now = time.monotonic()
        if thread is not None and now - thread.last_active > self.idle_ttl:
            del self.threads[thread.id]
            return None
        if thread is not None:
            thread.last_active = now
        return thread

    async def _create(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._error(401, "Invalid API key")
        body = await request.json() if request.can_read_body else {}
        thread = Thread(id=f"thr-{next(self._ids)}", last_active=time.monotonic())
        self.threads[thread.id] = thread
        if body.get("message"):
            refused = self._queue(thread, str(body["message"]))
            if refused is not None:
                return refused
        return web.json_response({"id": thread.id, "createdAt": _now()})

    async def _send(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._error(401, "Invalid API key")
        thread = self._thread(request)
        if thread is None:
            return self._error(404, "Thread not found")
        if self.expire_before_next_post:
            # The thread expired between the bridge's check and its send.
            self.expire_before_next_post = False
            self.expire(thread.id)
            return self._error(404, "Thread not found")
        content = (await request.json()).get("content")
        if not isinstance(content, str) or not content:
            return self._error(400, "content is required")
        refused = self._queue(thread, content)
        return refused or web.json_response({"success": True})

    def _queue(self, thread: Thread, content: str) -> web.Response | None:
        if len(content) > 4000:
            return self._error(413, "Message content exceeds 4000 characters")
        now = time.monotonic()
        while self._sent and now - self._sent[0] >= self.window:
            self._sent.popleft()
        if len(self._sent) >= self.messages_per_minute:
            self.rate_limited += 1
            wait = self.window - (now - self._sent[0])
            return self._error(429, "Too many messages", **{"Retry-After": f"{wait:.3g}"})
        self._sent.append(now)
        thread.messages.append(self._message("user", content))
        if self.hold:
            self._held.append((thread, content))
            return None
        loop = asyncio.get_running_loop()
        thread.answer_due = max(thread.answer_due, loop.time()) + self.answer_delay
        self._timers.append(loop.call_at(thread.answer_due, self._land_answer, thread, content))
        return None

    def _land_answer(self, thread: Thread, content: str) -> None:
        earlier = [m["content"] for m in thread.messages if m["type"] == "user"][:-1]
        if self.tool_step:
            thread.messages.append(self._message("tool", f"looked up {content!r}"))
        thread.messages.append(self._message("assistant", self.reply(content, earlier)))
        self._changed.set()

    def _message(self, kind: str, content: str) -> dict[str, Any]:
        return {
            "id": f"msg_{next(self._ids)}",
            "type": kind,
            "content": content,
            "createdAt": _now(),
        }

    async def _list(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._error(401, "Invalid API key")
        thread = self._thread(request)
        if thread is None:
            return self._error(404, "Thread not found")
        query = request.query
        messages = list(thread.messages)
        ids = [m["id"] for m in messages]
        low, high = 0, len(messages)
        for key in ("after", "before"):
            if key in query:
                if query[key] not in ids:
                    return self._error(400, f"unknown cursor {query[key]}")
                at = ids.index(query[key])
                low, high = (max(low, at + 1), high) if key == "after" else (low, min(high, at))
        messages = messages[low:high]
        limit = int(query.get("limit", 20))
        if not 1 <= limit <= 100:
            return self._error(400, "limit must be between 1 and 100")
        if query.get("order", "asc") == "desc":
            messages.reverse()
        page: Any = messages[:limit]
        return web.json_response({self.envelope: page} if self.envelope else page)


def _now() -> str:
    stamp = time.time()
    return (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(stamp))
        + f".{math.floor(stamp % 1 * 1000):03d}Z"
    )
