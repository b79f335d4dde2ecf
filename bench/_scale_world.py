"""What `bench.scale` runs against: a redis-server of its own (append-only, fsync per write, as
shipped), the benchmarks' LLM (`bench.llm`) in a process of its own, the fake Slack
(Socket Mode in, chat.postMessage out, each post timestamped on arrival), and `botbridge run
--role …` subprocesses configured for them.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml
from aiohttp import web

from bench.llm import running_llm
from tests.fakes.base import eventually
from tests.fakes.redis_server import OwnRedis, free_port
from tests.fakes.slack_api import APP_TOKEN, BOT_TOKEN, FakeSlack, im

ROOT = Path(__file__).resolve().parents[1]
_LINE = re.compile(r"^echo: s(\d+) m(\d+)$")


class TimedSlack(FakeSlack):
    """The fake Slack, noting when each answer arrives (monotonic) and keeping nothing else."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived: list[tuple[float, int, int]] = []  # (time, session, line)
        self.app.middlewares.clear()  # no per-request record: a long run keeps nothing

    async def _post_message(self, args: dict[str, Any]) -> web.Response:
        match = _LINE.match(str(args.get("text", "")))
        if match:
            self.arrived.append((time.monotonic(), int(match.group(1)), int(match.group(2))))
        return web.json_response({"ok": True, "channel": args.get("channel"), "ts": "1.000100"})

    async def say(self, session: int, line: int) -> float:
        """Session `session` says its line `line`; when (monotonic)."""
        said = time.monotonic()
        await self.push(im(f"s{session} m{line}", user=f"U{session}", channel=f"D{session}"))
        return said


class Process:
    """One `botbridge run --role ROLE` subprocess and its HTTP port."""

    def __init__(self, proc: asyncio.subprocess.Process, port: int, log: Path) -> None:
        self.proc = proc
        self.port = port
        self.log = log

    async def readyz(self) -> dict[str, Any] | None:
        try:
            async with httpx.AsyncClient(timeout=5) as client:
                response = await client.get(f"http://127.0.0.1:{self.port}/readyz")
        except httpx.TransportError:
            return None
        return response.json() if response.status_code == 200 else None

    def lines(self) -> list[str]:
        return self.log.read_text().splitlines()

    def cpu_seconds(self) -> float:
        """User + system CPU time the process has used so far (Linux /proc)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@asynccontextmanager
async def bridge_process(
    folder: Path, name: str, role: str, config: dict[str, Any]
) -> AsyncIterator[Process]:
    port = free_port()
    config = {**config, "http": {"host": "127.0.0.1", "port": port, "watch_interval": 0}}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    log = folder / f"{name}.log"
    with log.open("wb") as stderr:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bridge", "run", "-c", str(path), "--role", role,
            stdout=asyncio.subprocess.DEVNULL, stderr=stderr, cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
    process = Process(proc, port, log)
    try:
        yield process
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def until(check: Any, timeout: float, every: float = 0.05) -> Any:
    """Poll `check()` until it is truthy (its value), or fail at the deadline."""
    return await eventually(check, timeout, every)


async def ready(processes: list[Process], workers: int) -> None:
    """Every process ready, and every worker holding its share of the partitions."""

    async def check() -> bool:
        for process in processes:
            body = await process.readyz()
            if body is None:
                return False
            queue = body["components"].get("work queue")
            if queue and not re.match(
                rf"holds [1-9]\d* of \d+ partitions \({workers} ", queue["detail"]
            ):
                return False
        return True

    await until(check, 120, every=0.1)


def base_config(redis_url: str, llm_url: str, claim_idle: float) -> dict[str, Any]:
    return {
        "bridge": {
            "store": {"type": "redis", "url": redis_url, "prefix": "bench"},
            "claim_idle": claim_idle,
            "max_in_flight": 64,
            "log_level": "info",
            "drain_timeout": 10,
        },
        "backends": {"main": {"type": "openai", "base_url": llm_url, "max_retries": 0}},
    }


@asynccontextmanager
async def slack_cluster(
    folder: Path, workers: int, latency: float, claim_idle: float
) -> AsyncIterator[tuple[TimedSlack, Process, list[Process]]]:
    """Redis, the LLM, the fake Slack, one ingress and `workers` workers, all ready."""
    async with AsyncExitStack() as stack:
        redis = await stack.enter_async_context(OwnRedis(folder / "redis"))
        llm = await stack.enter_async_context(running_llm(latency))
        slack = await stack.enter_async_context(TimedSlack())
        config = base_config(redis.url, llm, claim_idle)
        config["adapters"] = {
            "slack": {
                "bot_token": BOT_TOKEN,
                "app_token": APP_TOKEN,
                "api_base_url": slack.api_url,
                "progress_reaction": None,
            }
        }
        ingress = await stack.enter_async_context(
            bridge_process(folder, "ingress", "ingress", config)
        )
        started = [
            await stack.enter_async_context(bridge_process(folder, f"worker{i}", "worker", config))
            for i in range(workers)
        ]
        await ready([ingress, *started], workers)
        yield slack, ingress, started
