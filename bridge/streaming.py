"""Streamed answers, platform-neutral: the answer grows in a live message paced under the
platform's limits, and ends as exactly the parts the whole answer would have been sent as.

An adapter implements `Live` for one answer (Telegram drafts or edits, Discord edits, Slack chat
streams). `StreamedReply` reads the backend's increments in one task and shows them from another:
`<think>` held back, an update only when due (`min_chars`, `min_interval`, the wait a 429 asked
for), each part sealed as soon as the growing text decides it, and the final parts delivered even
if every update before them failed. Nothing is dropped: an update shows all the text so far.
What is shown is recorded in the journal as it grows (`bridge.stream_journal`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from .config import StreamingSettings
from .errors import BackendError, Timeout
from .metrics import Metrics
from .stream_journal import Recorder
from .stream_text import Sealer, ThinkFilter
from .text import clean, split, utf16_len
from .types import Answer, Limits

log = logging.getLogger("bridge.streaming")


class UpdateFailed(Exception):
    """An update of the growing message did not go through. Harmless: the next one (or the final
    parts) shows all the text anyway."""


class Throttled(UpdateFailed):
    """The platform asked to wait (429, flood wait, an exhausted rate-limit bucket)."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"rate limited for {retry_after:g}s")
        self.retry_after = retry_after


class Live(Protocol):
    """One answer shown while it is written, on one platform; the adapter's side of streaming."""

    settings: StreamingSettings
    # Seconds after which an unchanged preview must be shown again (a Telegram draft fades after
    # about 30 s); None: a shown text stays.
    refresh: float | None

    @property
    def current(self) -> str | None:
        """The platform message showing the text being written, for the journal (None: none
        yet, or a preview that fades by itself, a Telegram draft): after a crash the answer
        is finished in it."""

    async def show(self, text: str) -> None:
        """Show `text` (Markdown, within one message's limit) as the message being written now;
        each call holds all of that message's text so far. Raise `UpdateFailed` (or `Throttled`)
        when it did not go through."""

    async def seal(self, part: str) -> Sequence[str]:
        """Make the message being written hold exactly `part`, formatted as a whole answer's part
        is (posted anew when nothing is shown); the next `show` begins a new message. Returns the
        ids of the platform messages that now hold the part. Raises when it cannot be
        delivered at all, like sending a whole answer does."""

    async def close(self) -> None:
        """The answer is over (delivered or abandoned): release whatever the preview holds."""


@dataclass(frozen=True, slots=True)
class Streamed:
    """How a streamed answer ended, once its last part was delivered."""

    answer: Answer | None  # None when the backend failed part-way: `failure` says why
    failure: BackendError | None
    parts: int  # messages' worth of parts delivered
    delivered_at: float  # clock reading when the last part was accepted


class StreamedReply:
    """One streamed answer, from the backend's increments to the final parts on the platform."""

    def __init__(
        self,
        live: Live,
        *,
        limits: Limits,
        apology: str,
        empty: str,
        working: AbstractAsyncContextManager[None],
        metrics: Metrics,
        platform: str,
        started: float,
        clock: Callable[[], float],
        recorder: Recorder | None = None,
    ) -> None:
        self._live = live
        self._recorder = recorder
        self._settings = live.settings
        self._measure = utf16_len if limits.utf16 else len
        self._limit = limits.max_len
        self._apology = apology
        self._empty = empty
        self._working = working
        self._metrics = metrics
        self._platform = platform
        self._started = started
        self._clock = clock
        self._think = ThinkFilter()
        self._sealer = Sealer(self._limit, self._measure)
        self._raw: list[str] = []
        self._answer: Answer | None = None
        self._grew = asyncio.Event()
        self._begun = False  # the first increment arrived: idle_timeout counts from here
        # What is on screen, and when the next update may go.
        self._shown = ""
        self._first_at: float | None = None
        self._last_update = -math.inf
        self._last_show = -math.inf
        self._not_before = -math.inf
        self._news_since: float | None = None
        self._seen = (0, 0)  # the filter's (length, retractions) at the last update
        self._delivered: list[str] = []

    # ------------------------------------------------------------------------------- running

    async def run(self, pieces: AsyncIterator[str | Answer]) -> Streamed:
        """Show the answer as it grows and deliver its final parts. Raises the backend's error
        when it failed before any text arrived (the caller apologises as for any answer), and
        whatever the platform raised when a final part could not be delivered."""
        async with contextlib.AsyncExitStack() as working:
            await working.enter_async_context(self._working)
            self._stop_working = working.aclose
            reader = asyncio.create_task(self._read(pieces), name="stream-reader")
            try:
                await self._present(reader)
                failure = _failure(reader)
                return await self._finish(failure)
            finally:
                if not reader.done():
                    reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
                await self._close()

    async def _read(self, pieces: AsyncIterator[str | Answer]) -> None:
        iterator = aiter(pieces)
        try:
            while True:
                # Before the first increment the backend's own timeout applies (a model may take
                # its time to start); after it, a silence of idle_timeout ends the answer.
                idle = self._settings.idle_timeout if self._begun else None
                try:
                    async with asyncio.timeout(idle):
                        piece = await anext(iterator)
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    raise Timeout(f"no new text for {idle:g}s") from None
                self._begun = True
                if isinstance(piece, Answer):
                    self._answer = piece
                elif piece:
                    self._raw.append(piece)
                    self._think.feed(piece)
                    self._grew.set()
        finally:
            closing = getattr(iterator, "aclose", None)
            if closing is not None:
                await closing()

    async def _present(self, reader: asyncio.Task[None]) -> None:
        while not reader.done():
            now = self._clock()
            due, trickle = self._due(now)
            if due is not None and due <= now:
                await self._update(now)
                continue
            waiters: set[asyncio.Future[Any]] = {reader}
            if due is None or trickle:  # more text may make an update due sooner
                self._grew.clear()
                waiters.add(asyncio.ensure_future(self._grew.wait()))
            try:
                await asyncio.wait(
                    waiters,
                    timeout=None if due is None else due - now,
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                for waiter in waiters - {reader}:
                    waiter.cancel()

    def _due(self, now: float) -> tuple[float | None, bool]:
        """When the next update may go (None while there is nothing new to show), and whether
        more text could make it sooner (too little is new yet, or only a refresh is due)."""
        length, retractions = self._think.length, self._think.retractions
        if (length, retractions) == self._seen:
            if self._live.refresh is not None and self._shown:
                return self._last_show + self._live.refresh, True  # new text may come first
            return None, False
        if self._news_since is None:
            self._news_since = now
        due = max(self._last_update + self._settings.min_interval, self._not_before)
        if retractions == self._seen[1] and length - self._seen[0] < self._settings.min_chars:
            # A trickle: show it once it has waited an interval, not a character at a time.
            return max(due, self._news_since + self._settings.min_interval), True
        return due, False

    async def _update(self, now: float) -> None:
        self._last_update = now
        self._news_since = None
        if self._think.retractions != self._seen[1]:
            self._retracted()
        self._seen = (self._think.length, self._think.retractions)
        sealed, growing = self._sealer.advance(self._think.visible)
        for part in sealed:
            await self._seal(part)
        refresh = self._live.refresh is not None and now - self._last_show >= self._live.refresh
        if growing and (growing != self._shown or refresh):
            await self._show(growing)

    def _retracted(self) -> None:
        """The server sent `</think>` without an opening tag: what was shown was reasoning."""
        if not self._sealer.sealed:
            return  # the growing message just shows the answer from now on
        # Parts already finished cannot be taken back; the answer starts over in a new message.
        log.warning(
            "%s: a closing </think> came after %d part(s) were delivered; they stay as sent",
            self._platform,
            len(self._sealer.sealed),
        )
        self._sealer = Sealer(self._limit, self._measure)
        self._delivered.clear()

    async def _show(self, text: str) -> None:
        try:
            await self._live.show(text)
        except Throttled as exc:
            self._not_before = self._clock() + exc.retry_after
            self._metrics.stream_updates.labels(self._platform, "rate_limited").inc()
            log.info("%s: update rate limited; the next waits %gs", self._platform, exc.retry_after)
            return
        except UpdateFailed as exc:
            self._metrics.stream_updates.labels(self._platform, "failed").inc()
            log.info("%s: update not shown (%s); the next shows it all", self._platform, exc)
            return
        self._metrics.stream_updates.labels(self._platform, "sent").inc()
        self._shown = text
        self._last_show = self._clock()
        await self._visible()
        if self._recorder is not None:
            await self._recorder.showing(self._live.current, text)

    async def _seal(self, part: str, *, last: bool = False) -> None:
        if self._recorder is not None and self._live.current is None:
            await self._recorder.posting(part)
        ids = await self._live.seal(part)
        if self._recorder is not None:
            await self._recorder.sealed(part, ids, last=last)
        self._delivered.append(part)
        self._shown = ""
        self._last_show = self._clock()
        await self._visible()

    async def _visible(self) -> None:
        """The first text is on screen: the working signal has done its job."""
        if self._first_at is None:
            self._first_at = self._clock()
            self._metrics.stream_first_text.labels(self._platform).observe(
                self._first_at - self._started
            )
            await self._stop_working()

    # ------------------------------------------------------------------------------- the end

    async def _finish(self, failure: BackendError | None) -> Streamed:
        self._think.finish()
        if failure is None and self._answer is not None:
            text = clean(self._answer.text) or self._empty
        else:
            partial = clean("".join(self._raw))
            if not partial and self._first_at is None:
                raise failure or Timeout("the stream ended without an answer")
            # What arrived stays, and the user is told the rest did not come.
            text = f"{partial}\n\n{self._apology}" if partial else self._apology
        parts = split(text, self._limit, self._measure)
        done = len(self._delivered)
        if parts[:done] != self._delivered:
            log.error(
                "%s: streamed parts differ from the final answer's; sending the rest as is",
                self._platform,
            )
        for number in range(done, len(parts)):
            await self._seal(parts[number], last=number == len(parts) - 1)
        if done == len(parts) and self._recorder is not None:
            await self._recorder.finished()
        answer = self._answer if failure is None else None
        return Streamed(answer, failure, len(self._delivered), self._clock())

    async def _close(self) -> None:
        try:
            await self._stop_working()
            await self._live.close()
        except Exception:  # cosmetic clean-up (a draft fades anyway): never fails the answer
            log.warning("%s: closing the streamed message failed", self._platform, exc_info=True)

    async def _stop_working(self) -> None:  # replaced in run() by the working context's exit
        return None


def _failure(reader: asyncio.Task[None]) -> BackendError | None:
    """Why the backend's stream ended early: None if it ended normally. Anything other than a
    `BackendError` is a bug and propagates."""
    exc = reader.exception()
    if exc is None or isinstance(exc, BackendError):
        return exc
    raise exc
