"""Session lanes: one job at a time per session, in arrival order; many sessions at once.

A lane is a queue plus the task that works through it; the task exists only while the lane has
work. Every task is owned here and cancelled on `close`, so nothing runs after shutdown. Lanes
made `held` queue jobs without running any until `release()` (the bridge queues what it recovered
first, and starts nothing before its adapters are up).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable

log = logging.getLogger("bridge.router")

Job = Callable[[], Awaitable[None]]


class Lanes:
    def __init__(
        self, on_change: Callable[[int, int], None] | None = None, *, held: bool = False
    ) -> None:
        self._released = asyncio.Event()
        if not held:
            self._released.set()
        self._queues: dict[str, deque[Job]] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._idle = asyncio.Event()
        self._idle.set()
        self._waiting = 0
        self._on_change = on_change or (lambda waiting, lanes: None)

    @property
    def waiting(self) -> int:
        """Jobs submitted and not yet started."""
        return self._waiting

    @property
    def released(self) -> bool:
        return self._released.is_set()

    def release(self) -> None:
        self._released.set()

    @property
    def active(self) -> int:
        return len(self._tasks)

    def submit(self, key: str, job: Job) -> bool:
        """Queue `job` behind the session's earlier jobs. Synchronous, so arrival order holds.
        True when it waits behind another of its session's jobs."""
        self._queues.setdefault(key, deque()).append(job)
        self._waiting += 1
        behind = key in self._tasks
        if not behind:
            self._tasks[key] = asyncio.create_task(self._run(key), name=f"lane {key}")
            self._idle.clear()
        self._changed()
        return behind

    async def _run(self, key: str) -> None:
        queue = self._queues[key]
        try:
            await self._released.wait()
            while queue:
                job = queue.popleft()
                self._waiting -= 1
                self._changed()
                try:
                    await job()
                except asyncio.CancelledError:
                    raise
                except Exception:  # a job's failure must not stall the session behind it
                    log.exception("session %s: job failed", key)
        finally:
            self._waiting -= len(queue)
            del self._queues[key]
            del self._tasks[key]
            if not self._tasks:
                self._idle.set()
            self._changed()

    def _changed(self) -> None:
        self._on_change(self._waiting, len(self._tasks))

    async def join(self, timeout: float | None = None) -> bool:
        """Wait until every lane is empty; False if `timeout` ran out first."""
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
