"""Shared fixtures: fake servers, configs, and a bridge driven through the console adapter."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from typing import Any

import pytest

from adapters.console import ConsoleAdapter
from bridge.app import Bridge
from bridge.config import Config, parse_config
from bridge.types import Outbound
from tests.fakes.base import eventually
from tests.fakes.openai_api import FakeOpenAI


def make_config(raw: dict[str, Any], env: dict[str, str] | None = None) -> Config:
    raw = dict(raw)
    bridge = dict(raw.get("bridge", {}))
    bridge.setdefault("store", {"path": ":memory:"})
    raw["bridge"] = bridge
    raw.setdefault("http", {"enabled": False})
    return parse_config(raw, env or {})


class RecordingConsole(ConsoleAdapter):
    """The real console adapter, also keeping every reply for the test to inspect."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("stdin", io.StringIO(""))
        kwargs.setdefault("stdout", io.StringIO())
        super().__init__(**kwargs)
        self.sent: list[Outbound] = []

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
