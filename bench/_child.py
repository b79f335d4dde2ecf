"""A system under test in a process of its own, so its CPU time and memory are its alone.

The child builds what it runs, prints `ready`, then answers commands read from stdin, one JSON
line each: `mark` reports CPU seconds, peak RSS and event-loop lag since the last mark; `stop`
stops the system, reports the same and exits. Loop lag is measured by a ticking task: how late
each 20 ms sleep wakes up. The parent side is `Child`.
"""

from __future__ import annotations

import asyncio
import cProfile
import json
import resource
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ._stats import summary

TICK = 0.02  # seconds between loop-lag probes


class _Ticker:
    def __init__(self) -> None:
        self.lags: list[float] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._tick(), name="bench-loop-lag")

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            expected = loop.time() + TICK
            await asyncio.sleep(TICK)  # the probe itself: how late does a timer fire?
            self.lags.append(max(0.0, loop.time() - expected) * 1000)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def take(self) -> list[float]:
        lags, self.lags = self.lags, []
        return lags


def usage() -> dict[str, float]:
    """CPU seconds (user + system) and peak RSS of this process so far."""
    used = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "cpu_s": used.ru_utime + used.ru_stime,
        "peak_rss_mb": used.ru_maxrss / 1024,  # Linux reports KiB
        "clock": time.monotonic(),
    }


async def serve(
    start: Callable[[], Awaitable[Any]],
    stop: Callable[[], Awaitable[Any]],
    profile: str | None = None,
) -> None:
    """Run the system: start it, obey `mark`/`stop` from stdin, stop it."""
    ticker = _Ticker()
    profiler = cProfile.Profile() if profile else None
    await start()
    ticker.start()
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    if profiler:
        profiler.enable()
    while True:
        command = (await reader.readline()).decode().strip()
        if command in ("stop", ""):
            break
        _report(ticker)
    if profiler:
        profiler.disable()
        profiler.dump_stats(profile)
    await ticker.stop()
    await stop()
    _report(ticker)


def _report(ticker: _Ticker) -> None:
    print(json.dumps({**usage(), "loop_lag_ms": summary(ticker.take())}), flush=True)


class Child:
    """The parent's handle on a child started with `python -m <module> <args>`."""

    def __init__(self, module: str, *args: str) -> None:
        self._argv = [sys.executable, "-m", module, *args]
        self._proc: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    async def start(self, timeout: float = 60.0) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            *self._argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
        )
        line = await asyncio.wait_for(self._line(), timeout)
        if line != "ready":
            await self.kill()
            raise RuntimeError(f"{self._argv[2]} did not start: {line!r}")

    async def _line(self) -> str:
        assert self._proc is not None and self._proc.stdout is not None
        return (await self._proc.stdout.readline()).decode().strip()

    async def _command(self, command: str, timeout: float) -> dict[str, Any]:
        assert self._proc is not None and self._proc.stdin is not None
        self._proc.stdin.write(f"{command}\n".encode())
        await self._proc.stdin.drain()
        line = await asyncio.wait_for(self._line(), timeout)
        return json.loads(line)

    async def mark(self, timeout: float = 30.0) -> dict[str, Any]:
        return await self._command("mark", timeout)

    async def stop(self, timeout: float = 60.0) -> dict[str, Any]:
        try:
            return await self._command("stop", timeout)
        finally:
            await self.kill()

    async def kill(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            self._proc.terminate()
            await self._proc.wait()
