"""The chat platforms as the benchmarks drive them: each fake server (tests/fakes) unrecorded,
with people who say numbered questions and a hook that timestamps every answer it receives.

A side has `start()`/`stop()`, `section()` (the bridge's `adapters.<platform>` config),
`say(person, text)` (a person posts; the update is available at the fake from that moment) and
calls `on_reply(text, monotonic_time)` for each message the bot posts.

Telegram: long polling (getUpdates). Discord: the gateway websocket (MESSAGE_CREATE) and REST.
Slack: Socket Mode (events over the websocket; chat.postMessage back).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from tests.fakes import discord_gateway, slack_api
from tests.fakes.discord_gateway import FakeDiscord
from tests.fakes.slack_api import FakeSlack
from tests.fakes.telegram_api import FakeTelegram, user

OnReply = Callable[[str, float], None]
_FIRST_PERSON = 10_000_000


class _Side:
    """What every side shares: the fake's lifetime, and a burst as one `say` after another."""

    fake: Any

    async def start(self) -> None:
        await self.fake.start()

    async def stop(self) -> None:
        await self.fake.stop()

    async def say(self, person: int, text: str) -> None:
        raise NotImplementedError

    async def say_many(self, said: list[tuple[int, str]]) -> None:
        for person, text in said:
            await self.say(person, text)


class _Telegram(FakeTelegram):
    def __init__(self, on_reply: OnReply) -> None:
        self.on_reply = on_reply
        super().__init__(record=False)

    async def _m_sendMessage(self, params: dict[str, Any]) -> dict[str, Any]:
        message = await super()._m_sendMessage(params)
        self.on_reply(message["text"], time.monotonic())
        return message


class TelegramSide(_Side):
    name = "telegram"

    def __init__(self, on_reply: OnReply) -> None:
        self.fake = _Telegram(on_reply)
        self._people: dict[int, dict[str, Any]] = {}

    def section(self) -> dict[str, Any]:
        return {
            "token": self.fake.token,
            "api_base_url": self.fake.base_url,
            "api_file_url": self.fake.file_url,
            "poll_timeout": 10,
            "stall_timeout": 60,
        }

    async def say(self, person: int, text: str) -> None:
        sender = self._people.get(person)
        if sender is None:
            sender = self._people[person] = user(_FIRST_PERSON + person, f"P{person}")
        await self.fake.push(self.fake.dm(sender, text))

    async def say_many(self, said: list[tuple[int, str]]) -> None:
        """Many updates made available at once (a burst)."""
        updates = []
        for person, text in said:
            sender = self._people.setdefault(
                person, user(_FIRST_PERSON + person, f"P{person}")
            )
            updates.append(self.fake.dm(sender, text))
        await self.fake.push(*updates)


class _Discord(FakeDiscord):
    def __init__(self, on_reply: OnReply) -> None:
        self.on_reply = on_reply
        super().__init__(record=False)

    async def _create_message(self, request: web.Request) -> web.Response:
        response = await super()._create_message(request)
        if response.status == 200:
            self.on_reply(self.posted[-1]["content"], time.monotonic())
        return response


class DiscordSide(_Side):
    name = "discord"

    def __init__(self, on_reply: OnReply) -> None:
        self.fake = _Discord(on_reply)

    def section(self) -> dict[str, Any]:
        return {
            "token": self.fake.token,
            "api_base_url": self.fake.api_base_url,
            "guild_ready_timeout": 0.05,
            "ready_timeout": 30,
            "identify_delay": 0,
        }

    async def say(self, person: int, text: str) -> None:
        uid = _FIRST_PERSON + person
        if uid not in self.fake.users:
            self.fake.users[uid] = discord_gateway._user(uid, f"p{person}")
        await self.fake.say(text, author=uid, dm=True)


class _Slack(FakeSlack):
    def __init__(self, on_reply: OnReply) -> None:
        self.on_reply = on_reply
        super().__init__(record=False)

    async def _post_message(self, args: dict[str, Any]) -> web.Response:
        before = len(self.posted)
        response = await super()._post_message(args)
        if len(self.posted) > before:
            self.on_reply(str(self.posted[-1].get("text", "")), time.monotonic())
        return response


class SlackSide(_Side):
    name = "slack"

    def __init__(self, on_reply: OnReply) -> None:
        self.fake = _Slack(on_reply)

    def section(self) -> dict[str, Any]:
        return {
            "bot_token": self.fake.bot_token,
            "app_token": self.fake.app_token,
            "api_base_url": self.fake.api_url,
        }

    async def say(self, person: int, text: str) -> None:
        await self.fake.push(slack_api.im(text, user=f"U{person}", channel=f"D{person}"))


SIDES: dict[str, type[_Side]] = {
    "telegram": TelegramSide,
    "discord": DiscordSide,
    "slack": SlackSide,
}
