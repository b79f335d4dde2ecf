"""Retention: what has expired is deleted in the background, so the store stays bounded under a
constant stream of new users: sessions idle for `bridge.session_ttl`, event ids past
`bridge.dedup_ttl`, rate windows that ended and token counts of earlier days. One task, owned by
the bridge, sweeps every `bridge.purge_interval` seconds (on Redis most of it expires by key TTL).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .store import Store

log = logging.getLogger("bridge.retention")


def touch(state: Mapping[str, Any], now: float | None = None) -> dict[str, Any] | None:
    """The state to store for a session whose backend keeps none here (the server has the
    history), once a day: so the store knows the session (for /forget, which must give it a new
    server-side id, and for `botbridge sessions`) and when it was last used (for expiry).
    None: already noted today."""
    day = time.strftime("%Y-%m-%d", time.gmtime(time.time() if now is None else now))
    return None if state.get("seen") == day else {**state, "seen": day}


@dataclass(frozen=True, slots=True)
class Swept:
    sessions: int
    events: int
    counters: int


class Retention:
    def __init__(
        self,
        store: Store,
        *,
        interval: float,
        day: Callable[[float], str],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._interval = interval
        self._day = day  # the budgets' current day: older token counts go
        self._clock = clock
        self._task: asyncio.Task[None] | None = None

    async def sweep(self) -> Swept:
        store = self._store
        now = self._clock()
        swept = Swept(
            await store.sessions.purge(now),
            await store.journal.purge(now),
            await store.counters.purge(now, self._day(now)),
        )
        if swept.sessions or swept.events or swept.counters:
            await store.compact()
            log.info(
                "retention: deleted %d idle session(s), %d expired event id(s), %d counter(s)",
                swept.sessions,
                swept.events,
                swept.counters,
            )
        return swept

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="retention")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception as exc:  # a store hiccup: try again next time
                log.warning("retention sweep failed: %r", exc)
            await asyncio.sleep(self._interval)
