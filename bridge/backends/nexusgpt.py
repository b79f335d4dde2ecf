"""The NexusGPT public thread API: a thread per session, messages queued, the answer polled for.

A turn: make sure the session's thread exists (a 404 means it expired after 24 h idle: make a new
one and send again, once), count the user messages already waiting in it, queue ours (at most
4,000 characters each; a message POST is never resent unless it provably did not reach the
server), then poll the thread until the assistant message that answers ours appears.

Which assistant message answers ours is decided by position, never by clock: after `cursor` (the
assistant message that answered the session's previous turn) each assistant message answers the
earliest still-unanswered user message before it. So an answer that arrives late, for a question
the bridge already gave up on, pairs with that question and is never posted as the next one's.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol
from urllib.parse import quote
from weakref import WeakKeyDictionary

from aiolimiter import AsyncLimiter

from ..config import NexusGPTBackend as NexusGPTConfig
from ..errors import BackendError, BadResponse, InputTooLong, Rejected, Timeout
from ..text import split
from ..types import Answer, Question, Session
from . import _http

log = logging.getLogger("bridge.backends.nexusgpt")

MAX_CONTENT = 4000  # characters per message, the API's documented limit
_PAGE = 100  # the most messages one list call returns
_PROBE_THREAD = "00000000-0000-0000-0000-000000000000"

Message = Mapping[str, Any]


class SharedLimiters:
    """One message-rate limiter per API key (and base URL), shared by every backend instance that
    uses that key in this process: the API counts messages per key, not per backend name.

    Keyed by a hash, so the key itself is never held as a dict key; per event loop, because an
    `AsyncLimiter` belongs to the loop it first ran on (each test has its own loop). On the
    Redis store every process shares one limit per key instead (`_pacing.StoreLimiters`).
    """

    def __init__(self) -> None:
        self._by_loop: WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, AsyncLimiter]]
        self._by_loop = WeakKeyDictionary()

    def get(self, base_url: str, api_key: str, per_minute: int) -> AsyncLimiter:
        loop = asyncio.get_running_loop()
        digest = hashlib.sha256(f"{base_url}\0{api_key}".encode()).hexdigest()
        limiters = self._by_loop.setdefault(loop, {})
        if digest not in limiters:
            limiters[digest] = AsyncLimiter(per_minute, 60.0)
        return limiters[digest]


LIMITERS = SharedLimiters()


class Limiter(Protocol):
    async def acquire(self) -> None: ...


class Limiters(Protocol):
    """Where the per-key limiters come from: this process (`SharedLimiters`), or every process
    on the store (`StoreLimiters`)."""

    def get(self, base_url: str, api_key: str, per_minute: int) -> Limiter: ...


class NexusGPTBackend:
    def __init__(
        self, name: str, config: NexusGPTConfig, limiters: Limiters = LIMITERS
    ) -> None:
        self.name = name
        self.config = config
        self._limiters = limiters
        self._api = _http.Api(
            name,
            config,
            base_url=config.base_url.rstrip("/") + "/api/public/",
            headers={"api-key": config.api_key.get_secret_value()},
        )

    @property
    def limiter(self) -> Limiter:
        cfg = self.config
        return self._limiters.get(
            cfg.base_url, cfg.api_key.get_secret_value(), cfg.messages_per_minute
        )

    async def ask(self, session: Session, question: Question) -> Answer:
        # The requests before polling (thread, post, rate-limit wait) share one `timeout`; the
        # polling lasts `poll_timeout` after them; nothing outlasts both together.
        deadline = self._api.deadline()
        last = deadline + self.config.poll_timeout
        parts = self._parts(question.text)
        thread: str | None = session.state.get("thread_id")
        cursor: str | None = session.state.get("cursor") if thread else None
        waiting = 0
        if thread:
            try:
                waiting = _user_count(await self._list(thread, cursor, deadline))
            except Rejected as exc:
                if exc.status != 404:
                    raise
                log.info("backend %s: thread %s expired; starting a new one", self.name, thread)
                thread = None
        fresh = thread is None
        if thread is None:
            thread, cursor, waiting = await self._create(session, deadline), None, 0
        try:
            try:
                await self._post(thread, parts, deadline)
            except Rejected as exc:
                if exc.status != 404 or fresh:
                    raise
                log.info(
                    "backend %s: thread %s expired; sending again in a new one", self.name, thread
                )
                thread, cursor, waiting = await self._create(session, deadline), None, 0
                await self._post(thread, parts, deadline)
        except BackendError as exc:
            # Our message may be in this thread: the next turn must continue it, late answer
            # and all (never a new thread that would lose it, nor a resend).
            exc.state = {**session.state, "thread_id": thread, "cursor": cursor}
            raise
        return await self._answer(session, thread, cursor, waiting + len(parts) - 1, last)

    async def resume(self, session: Session, question: Question) -> Answer:
        """After a crash: if the thread already holds our message (the last user messages after
        `cursor` are its parts), poll for its answer instead of posting it again; if only some
        parts made it, post the rest. Otherwise (never posted, or no thread yet) ask."""
        deadline = self._api.deadline()
        last = deadline + self.config.poll_timeout
        parts = self._parts(question.text)
        thread: str | None = session.state.get("thread_id")
        cursor: str | None = session.state.get("cursor")
        if thread:
            try:
                listed = await self._list(thread, cursor, deadline)
            except Rejected as exc:
                if exc.status != 404:
                    raise
                listed = []  # expired: nothing of ours is waiting there
            users = [str(m.get("content") or "") for m in listed if m.get("type") == "user"]
            posted = posted_parts(users, parts)
            if posted:
                log.info(
                    "backend %s: thread %s already has the question (%d of %d part(s)); "
                    "polling for its answer",
                    self.name,
                    thread,
                    posted,
                    len(parts),
                )
                await self._post(thread, parts[posted:], deadline)
                ours = len(users) + len(parts) - posted - 1
                return await self._answer(session, thread, cursor, ours, last)
        return await self.ask(session, question)

    async def _answer(
        self, session: Session, thread: str, cursor: str | None, ours: int, last: float
    ) -> Answer:
        """Poll for the answer to our `ours`-th user message after `cursor` (for `poll_timeout`,
        each read ending by `last`)."""
        try:
            until = asyncio.get_running_loop().time() + self.config.poll_timeout
            answer = await self._poll(thread, cursor, ours, until, last)
        except BackendError as exc:
            # Our message is in this thread: the next turn must continue it, late answer and all.
            exc.state = {**session.state, "thread_id": thread, "cursor": cursor}
            raise
        state = {**session.state, "thread_id": thread, "cursor": answer["id"]}
        return Answer(text=str(answer.get("content") or ""), state=state)

    def _parts(self, text: str) -> list[str]:
        if len(text) <= MAX_CONTENT:
            return [text]
        if not self.config.split_long_input:
            raise InputTooLong(MAX_CONTENT, len(text))
        return split(text, MAX_CONTENT)

    async def _create(self, session: Session, deadline: float) -> str:
        # An empty thread: resending the call can at worst leave an unused thread behind.
        response = await self._api.call(
            "POST", "thread", json={}, idempotent=True, deadline=deadline
        )
        body = _http.json_body(response)
        if not isinstance(body, dict) or not body.get("id"):
            raise BadResponse(f"thread created without an id ({_http.describe(body)})")
        thread = str(body["id"])
        # Saved before our message goes in, so that `resume` after a crash looks in this thread.
        await session.save({**session.state, "thread_id": thread, "cursor": None})
        return thread

    async def _post(self, thread: str, parts: Sequence[str], deadline: float) -> None:
        for part in parts:
            try:
                async with asyncio.timeout_at(deadline):
                    await self.limiter.acquire()
            except TimeoutError:
                raise Timeout(
                    f"waited for the {self.config.messages_per_minute}/min message limit "
                    f"beyond the {self.config.timeout:g}s timeout"
                ) from None
            try:
                # Queued in a thread the server keeps: never resent once it may have arrived.
                await self._api.call(
                    "POST",
                    _messages_path(thread),
                    json={"content": part},
                    idempotent=False,
                    deadline=deadline,
                )
            except Rejected as exc:
                if exc.status == 413:
                    raise InputTooLong(MAX_CONTENT, len(part)) from None
                raise

    async def _poll(
        self, thread: str, cursor: str | None, ours: int, until: float, last: float
    ) -> Message:
        """The assistant message answering the `ours`-th user message after `cursor`, polled
        for until `until`; each read ends by `last`."""
        cfg = self.config
        loop = asyncio.get_running_loop()
        limit = round(until - loop.time(), 1)
        for delay in backoff(cfg.poll_initial, cfg.poll_factor, cfg.poll_max):
            await asyncio.sleep(max(0.0, min(delay, until - loop.time())))
            answer = answer_for(await self._list(thread, cursor, last), ours)
            if answer is not None:
                return answer
            if loop.time() >= until:
                break
        raise Timeout(f"no assistant message in thread {thread} after {limit:g}s")

    async def _list(self, thread: str, cursor: str | None, deadline: float) -> list[Message]:
        """Every message after `cursor` (from the start if None), oldest first, page by page."""
        found: list[Message] = []
        while True:
            params: dict[str, Any] = {"limit": _PAGE, "order": "asc"}
            if cursor:
                params["after"] = cursor
            response = await self._api.call(
                "GET", _messages_path(thread), params=params, deadline=deadline
            )
            page = _messages(_http.json_body(response))
            found.extend(page)
            if len(page) < _PAGE:
                return found
            cursor = str(page[-1]["id"])

    async def probe(self) -> str:
        # Reading a thread that cannot exist creates nothing and queues nothing, yet the key is
        # checked first: 404 means the key was accepted, 401 that it was not.
        try:
            await self._api.call(
                "GET", _messages_path(_PROBE_THREAD), params={"limit": 1}, idempotent=True
            )
        except Rejected as exc:
            if exc.status != 404:
                raise
        return "api key accepted (read of a nonexistent thread: not found)"

    async def aclose(self) -> None:
        await self._api.aclose()


def backoff(initial: float, factor: float, cap: float) -> Iterator[float]:
    """Poll intervals: `initial`, then × `factor` each time, never above `cap`."""
    delay = initial
    while True:
        yield min(delay, cap)
        delay = min(delay * factor, cap)


def answer_for(messages: Sequence[Message], ours: int) -> Message | None:
    """The assistant message answering the `ours`-th (0-based) user message in `messages`, oldest
    first: each assistant message answers the earliest unanswered user message before it; tool
    messages and assistant messages with nothing left to answer are skipped."""
    unanswered: deque[int] = deque()
    users = 0
    for message in messages:
        kind = message.get("type")
        if kind == "user":
            unanswered.append(users)
            users += 1
        elif kind == "assistant" and unanswered and unanswered.popleft() == ours:
            return message
    return None


def posted_parts(users: Sequence[str], parts: Sequence[str]) -> int:
    """How many of `parts` (from the first) are the last user messages `users` of the thread:
    what a crash in the middle of posting them left there (0: none)."""
    for count in range(min(len(parts), len(users)), 0, -1):
        if list(users[len(users) - count :]) == list(parts[:count]):
            return count
    return 0


def _user_count(messages: Sequence[Message]) -> int:
    return sum(1 for m in messages if m.get("type") == "user")


def _messages(body: Any) -> list[Message]:
    """The docs show a bare list; accept one wrapped in `data` or `messages` as well."""
    if isinstance(body, dict):
        body = body.get("data", body.get("messages"))
    if not isinstance(body, list) or not all(
        isinstance(m, dict) and m.get("id") is not None and "type" in m for m in body
    ):
        raise BadResponse(f"not a list of messages ({_http.describe(body)})")
    return body


def _messages_path(thread: str) -> str:
    return f"thread/{quote(thread, safe='')}/messages"
