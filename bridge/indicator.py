"""The "working on it" signal (Telegram's typing…, Discord's typing) refreshed while an answer is
prepared, stopped by a flag and never cancelled mid-request.

It first shows after `delay`: an answer ready sooner never sends one (most of the cost of a fast
answer was its typing request), and until then there is only a timer, which is safe to cancel.

Cancelling a pooled HTTP request can leave its connection stuck in the pool for good (httpcore's
pool under contention: encode/httpcore#1093); enough such leaks and every later request of that
client fails with a pool timeout. So the refresh loop is told to stop and finishes the request
it has in flight; the adapter owns the leftover tasks and awaits them when it stops.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from .logs import brief
from .waiting import stopped

log = logging.getLogger("bridge.indicator")

# A signal: send it once; False means "stop trying" (the chat refuses us).
Signal = Callable[[], Awaitable[bool]]


class Indicators:
    """Every working signal of one adapter: `showing` while an answer is prepared, `aclose` at
    the adapter's stop."""

    def __init__(
        self,
        interval: float,
        *,
        delay: float = 0.0,
        grace: float = 1.0,
        stop_timeout: float = 10.0,
    ) -> None:
        self._interval = interval  # seconds between refreshes
        self._delay = delay  # seconds before the first signal
        # On leaving `showing`: how long to let a signal in flight finish before the answer is
        # posted (one sent after the answer would show "typing" again under it).
        self._grace = grace
        self._stop_timeout = stop_timeout
        self._running: dict[asyncio.Task[None], asyncio.Event] = {}
        self._closed = False  # after `aclose` a timer still due starts nothing

    @property
    def running(self) -> int:
        """Refresh loops not yet finished (those left over included)."""
        return len(self._running)

    @asynccontextmanager
    async def showing(self, signal: Signal, name: str) -> AsyncIterator[None]:
        stop = asyncio.Event()
        started: list[asyncio.Task[None]] = []

        def start() -> None:
            if self._closed:
                return
            task = asyncio.create_task(self._refresh(signal, stop), name=name)
            self._running[task] = stop
            task.add_done_callback(self._finished)
            started.append(task)

        if self._delay > 0:
            timer: asyncio.TimerHandle | None = asyncio.get_running_loop().call_later(
                self._delay, start
            )
        else:
            timer = None
            start()
        try:
            yield
        finally:
            if timer is not None:
                timer.cancel()  # not yet fired: nothing was sent, nothing is in flight
            stop.set()
            if started and not started[0].done():
                await asyncio.wait(started, timeout=self._grace)  # never cancels it

    async def _refresh(self, signal: Signal, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if not await signal():
                return
            await stopped(stop, self._interval)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.pop(task, None)
        if not task.cancelled() and task.exception() is not None:
            log.warning("working signal %s failed: %s", task.get_name(), brief(task.exception()))

    async def aclose(self) -> None:
        """Stop every refresh and wait for the signals still in flight; only a signal that
        outlasts `stop_timeout` (its HTTP timeouts should end it long before) is cancelled."""
        self._closed = True
        tasks = list(self._running)
        for stop in self._running.values():
            stop.set()
        if not tasks:
            return
        _, late = await asyncio.wait(tasks, timeout=self._stop_timeout)
        for task in late:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
