"""Client-side rate limits shared through the store: what a backend waits for before a call the
API counts (NexusGPT: 60 messages a minute per key, over every process using that key).

`StoreLimiters` hands out limiters with the `acquire()` of aiolimiter's, so a backend takes either
(in-process, the default; or shared, when the store is Redis). Keyed by a hash of the base URL
and the API key, never the key itself.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from ..errors import StoreUnavailable

log = logging.getLogger("bridge.backends")

_BACKOFF = (0.2, 0.5, 1.0, 2.0, 5.0)


class Pacing(Protocol):
    """The store's side (`RedisPacing`)."""

    async def reserve(self, key: str, rate: int, per: float) -> float: ...


class PacedLimiter:
    def __init__(
        self,
        pacing: Pacing,
        key: str,
        rate: int,
        per: float,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._pacing = pacing
        self._key = key
        self.max_rate = rate
        self.time_period = per
        self._sleep = sleep

    async def acquire(self) -> None:
        """Wait for this process's turn among every process sharing the limit. While the store
        is unreachable, wait for it too (the message's turn pauses with it)."""
        failures = 0
        while True:
            try:
                wait = await self._pacing.reserve(self._key, self.max_rate, self.time_period)
                break
            except StoreUnavailable as exc:
                if failures == 0:
                    log.warning("shared rate limit waits for the store: %s", exc)
                await self._sleep(_BACKOFF[min(failures, len(_BACKOFF) - 1)])
                failures += 1
        if wait > 0:
            await self._sleep(wait)  # the booked slot's time: pacing, not synchronisation


class StoreLimiters:
    """Limiters shared by every process on the store, one per API key and base URL."""

    def __init__(self, pacing: Pacing) -> None:
        self._pacing = pacing

    def get(self, base_url: str, api_key: str, per_minute: int) -> PacedLimiter:
        digest = hashlib.sha256(f"{base_url}\0{api_key}".encode()).hexdigest()[:32]
        return PacedLimiter(self._pacing, digest, per_minute, 60.0)
