"""The world of the scale-out scenes: real `botbridge run --role ingress|worker` subprocesses on one
Redis, the fake Telegram Bot API (every post timestamped on arrival), and a fake LLM that takes
0-300 ms (random, seeded) to answer. People talk in numbered lines ("s3 m12": session 3's twelfth
message), so the order and count of the answers can be read back from what the fake received.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

from aiohttp import web

from bridge.workqueue import partition_of
from tests.fakes.base import eventually
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.telegram_api import FakeTelegram, user
from tests.ops.test_daemon import Daemon, daemon, telegram_config

FULL = os.environ.get("BOTBRIDGE_FAULTS_FULL") == "1"
FIRST_USER = 5000
_LINE = re.compile(r"^echo: s(\d+) m(\d+)$")


class TimedTelegram(FakeTelegram):
    """The fake Bot API, noting when each message the bot posts arrives (monotonic)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.arrived: list[tuple[float, str]] = []

    async def _m_sendMessage(self, params: dict[str, Any]) -> dict[str, Any]:
        message = await super()._m_sendMessage(params)
        self.arrived.append((time.monotonic(), message["text"]))
        return message


class SlowLLM(FakeOpenAI):
    """Answers `echo: …` after `latency(text)` seconds (default: random 0-300 ms, seeded)."""

    def __init__(self, latency: Callable[[str], float] | None = None, seed: int = 12) -> None:
        self._random = random.Random(seed)
        self.latency = latency or (lambda text: self._random.uniform(0.0, 0.3))
        super().__init__()

    async def _complete(self, request: web.Request) -> web.Response:
        body = await request.json()
        await asyncio.sleep(self.latency(body["messages"][-1]["content"]))  # the model thinking
        return web.json_response(self._completion(f"echo: {body['messages'][-1]['content']}"))


def split_config(
    telegram: FakeTelegram,
    llm: FakeOpenAI,
    *,
    redis_url: str,
    prefix: str,
    partitions: int = 8,
    claim_idle: float = 2.0,
    cluster: bool = False,
) -> dict[str, Any]:
    """`telegram_config` (the daemon tests') on a shared Redis store (`cluster`: a Redis Cluster
    `redis_url` names a node of), with a short claim_idle."""
    config = telegram_config(telegram, llm)
    config["adapters"]["telegram"]["stall_timeout"] = 3
    store = {"type": "redis", "url": redis_url, "prefix": prefix, "partitions": partitions}
    store["cluster"] = cluster
    config["bridge"] = {"store": store, "claim_idle": claim_idle, "drain_timeout": 5}
    return config


@asynccontextmanager
async def shared_by_three(tmp_path: Path, config: dict[str, Any]) -> AsyncIterator[list[Daemon]]:
    """One ingress and three workers, each worker holding its share of the partitions."""
    roles = ["ingress", "worker", "worker", "worker"]
    async with processes(tmp_path, config, roles) as (_, *workers):
        await shared_out(workers)
        yield workers


@asynccontextmanager
async def processes(
    tmp_path: Path, config: dict[str, Any], roles: list[str]
) -> AsyncIterator[list[Daemon]]:
    """One `botbridge run` per role, started together, each ready before the scene begins."""
    async with AsyncExitStack() as stack:
        started = [
            await stack.enter_async_context(daemon(tmp_path, config, role=role, name=f"{role}{i}-"))
            for i, role in enumerate(roles)
        ]
        await asyncio.gather(*(p.ready(True, 60) for p in started))
        yield started


def session_user(session: int) -> dict[str, Any]:
    return user(FIRST_USER + session, f"S{session}")


def session_of(session: int, partitions: int) -> int:
    """The work-queue partition of a session (its DM key with qualified ids)."""
    return partition_of(f"wx:dm:tg.{FIRST_USER + session}", partitions)


async def talk(telegram: FakeTelegram, sessions: int, per_session: int, start: int = 0) -> int:
    """Every session says `per_session` numbered lines, interleaved; how many were said."""
    updates = [
        telegram.dm(session_user(s), f"s{s} m{i}")
        for i in range(start, start + per_session)
        for s in range(sessions)
    ]
    for first in range(0, len(updates), 100):
        await telegram.push(*updates[first : first + 100])
    return len(updates)


def answers(telegram: TimedTelegram) -> dict[int, list[int]]:
    """Per session, the numbers of the lines answered, in the order the answers arrived."""
    found: dict[int, list[int]] = defaultdict(list)
    for _, text in telegram.arrived:
        match = _LINE.match(text)
        if match:
            found[int(match.group(1))].append(int(match.group(2)))
    return found


def repeats(found: dict[int, list[int]]) -> int:
    return sum(len(numbers) - len(set(numbers)) for numbers in found.values())


def out_of_order(found: dict[int, list[int]]) -> list[tuple[int, list[int]]]:
    """Sessions whose answers, first occurrences only, do not follow the order they were asked
    in; or where a repeat comes after a later line's answer (a stale, late post)."""
    wrong = []
    for session, numbers in found.items():
        firsts = list(dict.fromkeys(numbers))
        if firsts != sorted(firsts):
            wrong.append((session, numbers))
            continue
        collapsed = [n for i, n in enumerate(numbers) if i == 0 or numbers[i - 1] != n]
        if len(collapsed) != len(set(collapsed)):  # a repeat that is not adjacent
            wrong.append((session, numbers))
    return wrong


def log_events(log: Path, pattern: str) -> list[re.Match[str]]:
    return [m for line in log.read_text().splitlines() if (m := re.search(pattern, line))]


def held_partitions(worker: Daemon) -> set[int]:
    """What a worker holds now, read from its log (taken, minus handed over or lost)."""
    held: set[int] = set()
    for line in worker.lines():
        if match := re.search(r"partition (\d+): taken", line):
            held.add(int(match.group(1)))
        elif match := re.search(
            r"partition (\d+): (handed over|lease lost|lease lapsed|renewed after)", line
        ):
            held.discard(int(match.group(1)))
    return held


async def shared_out(workers: list[Daemon], timeout: float = 30) -> None:
    """Wait until every worker holds some of the partitions (the first one up takes them all,
    then hands the others their shares at their next heartbeats)."""

    async def check() -> bool:
        for worker in workers:
            response = await worker.get("/readyz")
            detail = response.json()["components"]["work queue"]["detail"] if response else ""
            if not re.match(
                rf"holds [1-9]\d* of \d+ partitions \({len(workers)} workers\)", detail
            ):
                return False
        return True

    await eventually(check, timeout, every=0.1)
