"""A running bridge with the real TelegramAdapter against the fake Bot API, in either mode.

`world.send(update)` is Telegram delivering an update: queued for getUpdates in polling mode,
POSTed to the bridge's webhook endpoint (with the secret token) in webhook mode.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aiohttp

from adapters.telegram import TelegramAdapter
from bridge.app import Bridge
from bridge.metrics import Metrics
from tests.conftest import make_config
from tests.fakes.telegram_api import FakeTelegram

SECRET = "webhook-secret-7f3a"
WEBHOOK_PATH = "/telegram/webhook"


def telegram_section(fake: FakeTelegram, mode: str = "polling", **extra: Any) -> dict[str, Any]:
    section: dict[str, Any] = {
        "token": fake.token,
        "api_base_url": fake.base_url,
        "api_file_url": fake.file_url,
        "poll_timeout": 1,
        "stall_timeout": 5,
        "retry_backoff": 0.01,
        "max_backoff": 0.2,
        "typing_interval": 0.05,
        "typing_delay": 0,  # typing shows at once unless a test asks for the delay
    }
    if mode == "webhook":
        section.update(
            mode="webhook",
            webhook_url="https://bridge.example.org/telegram/webhook",
            secret_token=SECRET,
            webhook_path=WEBHOOK_PATH,
        )
    section.update(extra)
    return section


def world_config(
    fake: FakeTelegram,
    mode: str,
    backends: dict | None = None,
    bridge: dict | None = None,
    **extra: Any,
):
    raw: dict[str, Any] = {
        "backends": backends or {"echo": {"type": "echo"}},
        "adapters": {"telegram": telegram_section(fake, mode, **extra)},
    }
    if bridge:
        raw["bridge"] = bridge
    if mode == "webhook":
        raw["http"] = {"enabled": True, "port": 0}
    return make_config(raw)


@dataclass
class World:
    fake: FakeTelegram
    bridge: Bridge
    adapter: TelegramAdapter
    mode: str

    @property
    def webhook_url(self) -> str:
        assert self.bridge.http is not None
        return f"http://127.0.0.1:{self.bridge.http.port}{WEBHOOK_PATH}"

    async def send(self, *updates: dict[str, Any]) -> None:
        if self.mode == "polling":
            await self.fake.push(*updates)
            return
        for update in updates:
            status = await self.post(self.fake.complete(update))
            assert status == 200, status

    async def post(self, update: dict[str, Any], secret: str | None = SECRET) -> int:
        headers = {"X-Telegram-Bot-Api-Secret-Token": secret} if secret is not None else {}
        async with (
            aiohttp.ClientSession() as session,
            session.post(self.webhook_url, json=update, headers=headers) as response,
        ):
            return response.status


async def start_world(running, fake: FakeTelegram, mode: str, **kwargs: Any) -> World:
    """`running` is the conftest fixture: the bridge is stopped after the test."""
    config = world_config(fake, mode, **kwargs)
    assert config.adapters.telegram is not None
    adapter = TelegramAdapter(config.adapters.telegram, Metrics())
    bridge = await running(config, adapter)
    return World(fake, bridge, adapter, mode)
