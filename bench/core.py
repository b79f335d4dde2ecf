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
import contextlib
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from adapters.console import ConsoleAdapter
from bridge import __version__
from bridge.app import Bridge
from bridge.config import parse_config
from bridge.metrics import Metrics
from bridge.types import Outbound


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

    async def send(self, outbound: Outbound) -> None:
        self.answers += 1
        if outbound.chat_id in self.waiting:
            self.waiting.pop(outbound.chat_id).set_result(outbound.parts[0])
        if self.answers >= self.expected:
            self.all_answered.set()


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


def percentile(sorted_values: list[float], q: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


@contextlib.asynccontextmanager
async def fake_openai() -> AsyncIterator[str]:
    """The fake OpenAI server in a process of its own, as a real server would be; its base URL."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.fakes.openai_api", "--port", "0",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        port = int(await asyncio.wait_for(proc.stdout.readline(), 30))
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        await proc.wait()


async def run(
    messages: int, sessions: int, state_dir: str, rate: float | None = None
) -> dict[str, Any]:
    samples: list[float] = []
    metrics = Metrics()
    metrics.added_latency = _Tap(metrics.added_latency, samples)  # type: ignore[assignment]
    async with fake_openai() as base_url:
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
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
