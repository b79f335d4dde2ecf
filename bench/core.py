"""Core benchmark: N messages over S sessions through the console adapter, the real router and the
SQLite store, to the fake OpenAI-compatible server answering at once.

By default each session is a user who waits for the answer before sending the next message (a
closed loop: throughput at saturation). With `--rate R`, messages arrive at R per second spread
over the sessions whatever the answers do (an open loop: latency at a given load). It reports
messages/s and the bridge-added latency the router measures (receipt -> backend call, plus
answer -> reply handed to the adapter) as p50/p90/p99/max.

    python -m bench.core --messages 5000 --sessions 50 --json bench/results/core.json
    python -m bench.core --messages 5000 --sessions 50 --rate 400
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from adapters.console import ConsoleAdapter
from bridge import __version__
from bridge.app import Bridge
from bridge.config import parse_config
from bridge.metrics import Metrics
from bridge.types import Outbound

from ._stats import percentile, write_json
from .llm import running_llm


class _Tap:
    """Wraps the added-latency histogram so every raw sample is kept for percentiles."""

    def __init__(self, histogram: Any, samples: list[float]) -> None:
        self._histogram = histogram
        self._samples = samples

    def labels(self, *labels: str) -> _Tap:
        return _Tap(self._histogram.labels(*labels), self._samples)

    def observe(self, value: float) -> None:
        self._samples.append(value)
        self._histogram.observe(value)


class _Users(ConsoleAdapter):
    """The console adapter, waking each simulated user when their answer arrives."""

    def __init__(self) -> None:
        super().__init__(stdin=io.StringIO(""), stdout=io.StringIO(), interactive=False)
        self.waiting: dict[str, asyncio.Future[str]] = {}
        self.answers = 0
        self.all_answered = asyncio.Event()
        self.expected = 0

    async def send(self, outbound: Outbound) -> str:
        self.answers += 1
        if outbound.chat_id in self.waiting:
            self.waiting.pop(outbound.chat_id).set_result(outbound.text)
        if self.answers >= self.expected:
            self.all_answered.set()
        return str(self.answers)


async def _closed_loop(users: _Users, messages: int, sessions: int) -> None:
    async def user(n: int) -> None:
        name = f"user{n}"
        for i in range(messages // sessions):
            future = asyncio.get_running_loop().create_future()
            users.waiting[name] = future
            await users.say(f"message {i}", user=name)
            await future

    await asyncio.gather(*(user(n) for n in range(sessions)))


async def _open_loop(users: _Users, messages: int, sessions: int, rate: float) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    for i in range(messages):
        delay = start + i / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)  # the arrival schedule itself, not synchronisation
        await users.say(f"message {i}", user=f"user{i % sessions}")
    await users.all_answered.wait()


async def run(
    messages: int, sessions: int, state_dir: str, rate: float | None = None
) -> dict[str, Any]:
    samples: list[float] = []
    metrics = Metrics()
    metrics.added_latency = _Tap(metrics.added_latency, samples)  # type: ignore[assignment]
    async with running_llm() as base_url:
        config = parse_config({
            "bridge": {"store": {"path": str(Path(state_dir) / "bench.sqlite3")},
                       "max_in_flight": 64, "log_level": "warning"},
            "backends": {"main": {"type": "openai", "base_url": base_url, "session": "header"}},
            "http": {"enabled": False},
        }, {})
        users = _Users()
        bridge = Bridge(config, [users], metrics=metrics)
        await bridge.start()
        users.expected = messages if rate else (messages // sessions) * sessions
        started = time.perf_counter()
        if rate:
            await _open_loop(users, messages, sessions, rate)
        else:
            await _closed_loop(users, messages, sessions)
        elapsed = time.perf_counter() - started
        await bridge.stop()

    total = users.answers
    ordered = sorted(samples)
    ms = [value * 1000 for value in ordered]
    return {
        "benchmark": "core",
        "version": __version__,
        "python": sys.version.split()[0],
        "machine": f"{platform.machine()} {os.cpu_count()} cores",
        "messages": total,
        "sessions": sessions,
        "mode": f"open loop at {rate:g}/s" if rate else "closed loop",
        "seconds": round(elapsed, 3),
        "messages_per_second": round(total / elapsed, 1),
        "added_latency_ms": {
            "p50": round(percentile(ms, 0.50), 3),
            "p90": round(percentile(ms, 0.90), 3),
            "p99": round(percentile(ms, 0.99), 3),
            "max": round(ms[-1], 3),
            "mean": round(statistics.fmean(ms), 3),
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.core", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--rate", type=float, help="messages per second (open loop)")
    parser.add_argument("--json", help="also write the result as JSON to this path")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as state_dir:
        result = asyncio.run(run(args.messages, args.sessions, state_dir, args.rate))
    latency = result["added_latency_ms"]
    print(f"{result['mode']}: {result['messages']} messages over {result['sessions']} sessions in "
          f"{result['seconds']} s: {result['messages_per_second']} messages/s")
    print("bridge-added latency (ms): " + "  ".join(f"{k} {v}" for k, v in latency.items()))
    write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
