"""Shared fixtures: fake servers, configs, and a bridge driven through the console adapter."""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from adapters.console import ConsoleAdapter
from bridge.app import Bridge
from bridge.config import Config, parse_config
from bridge.errors import PictureUnavailable
from bridge.store.redis import RedisStore
from bridge.types import Inbound, Outbound, Picture
from tests.fakes.base import eventually
from tests.fakes.openai_api import FakeOpenAI

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")


@asynccontextmanager
async def redis_prefix() -> AsyncIterator[str]:
    """A fresh key prefix on the test Redis (`REDIS_URL`); skipped when no Redis answers (an
    error in CI). Every key under it is deleted afterwards."""
    name = f"test-{uuid.uuid4().hex}"
    probe = RedisStore(REDIS_URL, prefix=name)
    try:
        await probe.open()
    except OSError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no Redis at {REDIS_URL}: {exc}")
    try:
        yield name
    finally:
        keys = [key async for key in probe.redis.scan_iter(match=f"{name}:*", count=1000)]
        for i in range(0, len(keys), 1000):
            await probe.redis.delete(*keys[i : i + 1000])
        await probe.close()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A three-master Redis Cluster of the test session's own (`tests/fakes/redis_cluster.py`),
    started once, for the tests that ask for it; its `url` names one node."""
    from tests.fakes.redis_cluster import OwnCluster

    with OwnCluster(tmp_path_factory.mktemp("cluster")) as cluster:
        yield cluster


def make_config(raw: dict[str, Any], env: dict[str, str] | None = None) -> Config:
    raw = dict(raw)
    bridge = dict(raw.get("bridge", {}))
    bridge.setdefault("store", {"path": ":memory:"})
    raw["bridge"] = bridge
    raw.setdefault("http", {"enabled": False})
    return parse_config(raw, env or {})


@asynccontextmanager
async def lifetime(config: Config, console: Any, **kwargs: Any) -> AsyncIterator[Bridge]:
    """One run of the bridge (a process's lifetime, for restart scenes); `kwargs` go to Bridge."""
    bridge = Bridge(config, [console], **kwargs)
    await bridge.start()
    try:
        yield bridge
    finally:
        await bridge.stop()


def conversation_config(
    openai: FakeOpenAI, adapters: dict[str, Any], bridge: dict | None = None, **backend: Any
) -> Config:
    """One OpenAI-compatible backend (`main`, no retries; `backend` adds keys) behind `adapters`."""
    main = {"type": "openai", "base_url": openai.base_url, "max_retries": 0, **backend}
    return make_config({"bridge": bridge or {}, "backends": {"main": main}, "adapters": adapters})


class RecordingConsole(ConsoleAdapter):
    """The real console adapter, also keeping every reply for the test to inspect, and standing
    in for a platform with pictures: `pictures[ref]` is served to the bridge, `fetched` lists
    the refs it asked for."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("stdin", io.StringIO(""))
        kwargs.setdefault("stdout", io.StringIO())
        super().__init__(**kwargs)
        self.sent: list[Outbound] = []
        self.pictures: dict[str, bytes] = {}
        self.fetched: list[str] = []

    async def deliver(self, inbound: Inbound) -> bool:
        """Hand the bridge an `Inbound` built by the test (a quote, a picture…)."""
        assert self._deliver is not None
        return await self._deliver(inbound)

    async def fetch_picture(self, picture: Picture, max_bytes: int) -> bytes:
        self.fetched.append(picture.ref)
        if picture.ref not in self.pictures:
            raise PictureUnavailable(f"no picture {picture.ref}")
        return self.pictures[picture.ref]

    async def send(self, outbound: Outbound) -> str:
        self.sent.append(outbound)
        return await super().send(outbound)

    def texts(self, chat: str | None = None) -> list[str]:
        """Each reply's text (its parts joined), in the order the replies began."""
        replies: dict[str, list[str]] = {}
        for outbound in self.sent:
            if chat is None or outbound.chat_id == chat:
                replies.setdefault(outbound.event_id or str(id(outbound)), []).append(outbound.text)
        return ["".join(parts) for parts in replies.values()]

    async def replies(
        self, count: int, chat: str | None = None, timeout: float = 10.0
    ) -> list[str]:
        await eventually(lambda: len(self.texts(chat)) >= count, timeout)
        return self.texts(chat)


@pytest.fixture
async def openai_fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as server:
        yield server


@pytest.fixture
def console() -> RecordingConsole:
    return RecordingConsole(user="alice")


@pytest.fixture
async def running() -> AsyncIterator[Any]:
    """`await running(config, console)` starts a bridge that is stopped after the test."""
    started: list[Bridge] = []

    async def start(config: Config, *adapters: Any) -> Bridge:
        bridge = Bridge(config, list(adapters))
        await bridge.start()
        started.append(bridge)
        return bridge

    yield start
    for bridge in started:
        await bridge.stop()
