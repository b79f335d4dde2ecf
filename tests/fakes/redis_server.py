"""Redis for the tests: the shared server (`REDIS_URL`) under a prefix of the test's own, and a
`redis-server` of the test's own on a free port, with append-only persistence, that a scene may
stop and start again ("Redis restarted mid-run") without touching anyone else's server.

    async with scoped_store() as store: ...           # RedisStore, prefix test-<random>, cleaned
    async with OwnRedis(tmp_path) as server:           # server.url; await server.restart()
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from bridge.store.redis import RedisStore

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")


@asynccontextmanager
async def scoped_store(url: str = REDIS_URL, prefix: str | None = None) -> AsyncIterator[RedisStore]:
    """An open RedisStore under a fresh prefix; its keys are deleted afterwards (only those)."""
    store = RedisStore(url, prefix=prefix or f"test-{uuid.uuid4().hex[:12]}")
    try:
        await store.open()
    except OSError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no Redis at {url}: {exc}")
    try:
        yield store
    finally:
        await delete_prefix(store.redis, store.prefix)
        await store.close()


async def delete_prefix(redis: aioredis.Redis, prefix: str) -> None:
    keys = [key async for key in redis.scan_iter(match=f"{prefix}:*", count=1000)]
    for start in range(0, len(keys), 500):
        await redis.delete(*keys[start : start + 500])


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
