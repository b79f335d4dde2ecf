"""Intake backpressure: at most `bridge.max_pending` messages taken in and not yet put to a
backend; the next waits in the router's intake, in arrival order, and the adapter fetches no more.

Without it a burst (10,000 people asking at once) is taken in as fast as getUpdates returns it,
and the turns it starts all become ready together: event-loop iterations of hundreds of
milliseconds, every timer late. Waiting at intake leaves the burst where it is (at the platform,
in a webhook's open request) until the turns ahead of it have reached their backend calls. A
ticket is given back when its message is asked or its turn ends without asking, whichever is
first, or at once when the message queues behind an earlier one of its own session: a lane never
waits for intake, and one person's burst (a spammer's hundred messages behind a slow answer)
holds no places from everyone else.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable


class Ticket:
    """One message's place between intake and its backend call; `release` it once."""

    __slots__ = ("_pending",)

    def __init__(self, pending: Pending | None) -> None:
        self._pending = pending

    def release(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending._leave()


class Pending:
    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._held = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._closed = False

    @property
    def held(self) -> int:
        """Messages taken in and not yet asked."""
        return self._held

    @property
    def waiting(self) -> int:
        """Messages waiting at intake for a place."""
        return len(self._waiters)

    async def enter(self) -> Ticket:
        """A place, once one is free and every message that came earlier has had its own."""
        if self._closed:
            return Ticket(None)  # stopping: nothing more starts, so nothing to bound
        if self._held < self._limit and not self._waiters:
            self._held += 1
            return Ticket(self)
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                if not self._closed:
                    self._leave()  # handed a place just as it was cancelled: pass it on
            else:
                self._waiters.remove(waiter)
            raise
        return Ticket(None if self._closed else self)

    def close(self) -> None:
        """Stop bounding (the bridge is stopping and its lanes may never give places back):
        everyone waiting goes on at once."""
        self._closed = True
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    def _leave(self) -> None:
        while self._waiters:  # the place goes to the longest waiting, in arrival order
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._held -= 1


async def holding(ticket: Ticket | None, work: Awaitable[None]) -> None:
    """Run `work` (a message's turn), then give its place back if it was not asked."""
    try:
        await work
    finally:
        if ticket is not None:
            ticket.release()
