"""Redis for the tests: the shared server (`REDIS_URL`) under a prefix of the test's own, and a
`redis-server` of the test's own on a free port, with append-only persistence, that a scene may
stop and start again ("Redis restarted mid-run") without touching anyone else's server.

    async with scoped_store() as store: ...           # RedisStore, prefix test-<random>, cleaned
    async with OwnRedis(tmp_path) as server:           # server.url; await server.restart()
"""

from __future__ import annotations

import asyncio
import shutil
import socket
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from bridge.store.redis import RedisStore
from tests.conftest import REDIS_URL, redis_prefix


@asynccontextmanager
async def scoped_store(prefix: str | None = None) -> AsyncIterator[RedisStore]:
    """An open RedisStore on the test Redis under a fresh prefix (`redis_prefix`: its keys are
    deleted afterwards), or under `prefix` (a second process's view of the same keys)."""
    async with AsyncExitStack() as stack:
        name = prefix or await stack.enter_async_context(redis_prefix())
        store = RedisStore(REDIS_URL, prefix=name)
        await store.open()
        stack.push_async_callback(store.close)
        yield store


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class OwnRedis:
    """A redis-server on 127.0.0.1:<free port>, data in `directory`, append-only with an fsync per
    write: what an operator runs when "nothing accepted is lost" must survive a restart."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.proc = await asyncio.create_subprocess_exec(
            binary,
            "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
            "--appendonly", "yes", "--appendfsync", "always", "--save", "",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        client = aioredis.from_url(self.url)
        try:
            async with asyncio.timeout(20):
                while True:
                    try:
                        if await client.ping():
                            return
                    except (OSError, aioredis.ConnectionError, aioredis.BusyLoadingError):
                        pass
                    await asyncio.sleep(0.05)
        finally:
            await client.aclose()

    async def kill(self) -> None:
        """SIGKILL: no shutdown save; only what the append-only file holds survives."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()

    async def restart(self) -> None:
        await self.kill()
        await self.start()

    async def __aenter__(self) -> OwnRedis:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.kill()
