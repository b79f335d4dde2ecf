"""How long preparing a long answer holds the event loop: a task ticks every millisecond while the
answer is cleaned, capped and split for Telegram (4,096 UTF-16 units); the longest gap between
two ticks is the longest stall. Three ways: `thread` (bridge.text.prepare_async, what the router
does), `loop` (bridge.text.prepare called on the loop) and `split` (the old path: clean and split
the whole answer on the loop, no cap; sizes up to 1 MB only, beyond it takes tens of seconds).

    python -m bench.loop_stall --runs 7
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable

from bridge.text import clean, prepare, prepare_async, split, utf16_len

PARAGRAPH = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 12 + "\n\n"


class LoopWatch:
    """`async with LoopWatch() as watch: …` then `watch.longest`: the longest the event loop was
    held meanwhile, in seconds, seen by a task that ticks every millisecond."""

    def __init__(self) -> None:
        self.longest = 0.0
        self._done = asyncio.Event()
        self._ticker: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        last = time.perf_counter()
        while not self._done.is_set():
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            self.longest = max(self.longest, now - last)
            last = now

    async def __aenter__(self) -> LoopWatch:
        self._ticker = asyncio.create_task(self._tick())
        await asyncio.sleep(0.01)  # ticking before the work starts
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._done.set()
        assert self._ticker is not None
        await self._ticker


async def stall(work: Callable[[], Awaitable[object]]) -> tuple[float, float]:
    """(longest stall, time the work took), in seconds."""
    async with LoopWatch() as watch:
        started = time.perf_counter()
        await work()
        took = time.perf_counter() - started
    return watch.longest, took


def ways(text: str) -> dict[str, Callable[[], Awaitable[object]]]:
    async def thread() -> object:
        return await prepare_async(text, 4096, utf16_len, 20000)

    async def loop() -> object:
        return prepare(text, 4096, utf16_len, 20000)

    async def old() -> object:
        return split(clean(text), 4096, utf16_len)

    found = {"thread": thread, "loop": loop}
    if len(text) <= 1_000_000:
        found["split"] = old
    return found


async def main(runs: int, sizes: list[float]) -> None:
    print(f"{'size':>8} {'way':>7}  stall ms: median   max    work ms: median")
    for megabytes in sizes:
        text = PARAGRAPH * max(1, int(megabytes * 1_000_000 / len(PARAGRAPH)))
        measured: dict[str, list[tuple[float, float]]] = {}
        for _ in range(runs):  # interleaved, so drift on a shared machine hits every way alike
            for name, work in ways(text).items():
                measured.setdefault(name, []).append(await stall(work))
        for name, samples in measured.items():
            stalls = [s * 1000 for s, _ in samples]
            works = [w * 1000 for _, w in samples]
            print(
                f"{megabytes:>6g}MB {name:>7}  {statistics.median(stalls):>14.1f} "
                f"{max(stalls):>6.1f}  {statistics.median(works):>14.1f}"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--sizes", type=float, nargs="+", default=[0.1, 1.0, 10.0])
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.sizes))
