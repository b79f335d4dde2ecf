"""Holding on to events a platform cannot deliver again: Discord's gateway sends each message
once, so when the store cannot take one (Redis away), the adapter keeps it here, in arrival
order, and hands it on once the store is back, before anything newer.

Bounded (`limit` messages) and in memory only: a process that dies meanwhile loses what it
held, and what does not fit is dropped with an error line. Platforms that redeliver (Telegram,
Slack) are refused instead, and deliver again by themselves.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

from .adapter import Deliver
from .errors import StoreUnavailable
from .types import Inbound

log = logging.getLogger("bridge.holding")

_BACKOFF = (0.2, 0.5, 1.0, 2.0, 5.0)


class Holding:
    def __init__(self, deliver: Deliver, *, platform: str, limit: int = 10_000) -> None:
        self._deliver = deliver
        self._platform = platform
        self._limit = limit
        self._held: deque[Inbound] = deque()
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0

    @property
    def held(self) -> int:
        return len(self._held)

    async def deliver(self, inbound: Inbound) -> None:
        """Hand `inbound` on now, or hold it until the store takes it. Raises what is not a
        store outage (the caller logs it as not accepted)."""
        if not self._held:
            try:
                await self._deliver(inbound)
                return
            except StoreUnavailable as exc:
                log.warning(
                    "%s: the store cannot take messages (%s): holding them until it can",
                    self._platform,
                    exc,
                    extra={"platform": self._platform},
                )
        self._hold(inbound)

    def _hold(self, inbound: Inbound) -> None:
        if len(self._held) >= self._limit:
            self.dropped += 1
            log.error(
                "%s: %d messages held already: message %s dropped",
                self._platform,
                len(self._held),
                inbound.event_id,
                extra={"platform": self._platform},
            )
            return
        self._held.append(inbound)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._hand_on(), name=f"{self._platform} holding")

    async def _hand_on(self) -> None:
        failures = 0
        while self._held:
            try:
                await self._deliver(self._held[0])
            except StoreUnavailable:
                await asyncio.sleep(_BACKOFF[min(failures, len(_BACKOFF) - 1)])
                failures += 1
                continue
            except Exception as exc:  # not an outage: this one message is lost, not the rest
                log.error("%s: held message not accepted: %r", self._platform, exc)
            self._held.popleft()
        log.info("%s: every held message is accepted", self._platform)

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if self._held:
            log.error(
                "%s: stopping with %d message(s) the store never took: they are lost",
                self._platform,
                len(self._held),
            )
            self._held.clear()
