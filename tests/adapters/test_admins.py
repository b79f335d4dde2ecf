"""Admin commands on every platform, through the real platform libraries: an admin sees /status
and blocks and unblocks someone; anyone else is refused with one short line; a blocked person
gets the denied reply until unblocked."""

from __future__ import annotations

import pytest

from adapters.discord import DiscordAdapter
from adapters.slack import SlackAdapter
from adapters.telegram import TelegramAdapter
from bridge.metrics import Metrics
from tests.adapters.telegram_world import telegram_section
from tests.adapters.test_discord import discord_section
from tests.conftest import make_config
from tests.fakes.base import eventually
from tests.fakes.discord_gateway import ALICE, BOB, FakeDiscord
from tests.fakes.slack_api import APP_TOKEN, BOT_TOKEN, FakeSlack, im, mention
from tests.fakes.telegram_api import FakeTelegram, group, user

DENIED = "Sorry, this bot is not open to you."


def config(platform: str, section: dict, admin: dict):
    return make_config(
        {
            "backends": {"echo": {"type": "echo"}},
            "adapters": {platform: section},
            "access": {"admins": [admin]},
        }
    )


def refused(command: str) -> str:
    return f"Sorry, only the bot's admins can use /{command}."


async def test_telegram_admin_commands(running, caplog):
    caplog.set_level("INFO", logger="bridge.admin")
    async with FakeTelegram() as fake:
        cfg = config("telegram", telegram_section(fake), {"platform": "telegram", "user": 42})
        await running(cfg, TelegramAdapter(cfg.adapters.telegram, Metrics()))
        alice, bob = user(42, "Alice"), user(43, "Bob")
        team = group(-100555, "Team")
        steps = [
            (fake.dm(bob, "/status"), refused("status")),
            (fake.dm(bob, "/block 42"), refused("block")),
            (fake.dm(alice, "/status"), "botbridge "),
            (fake.group_message(team, alice, "/block@bridge_bot 43"), "Blocked tg.43"),
            (fake.dm(bob, "hello?"), DENIED),
            (fake.group_message(team, bob, "@bridge_bot anyone?"), DENIED),
            (fake.dm(alice, "/unblock telegram:43"), "Unblocked tg.43."),
            (fake.dm(bob, "back again"), "[wx:dm:tg.43] back again"),
        ]
        for n, (update, expected) in enumerate(steps, 1):
            await fake.push(update)
            sent = await fake.wait_sent(n)
            assert sent[-1]["text"].startswith(expected), (n, sent[-1]["text"])
        status = fake.sent[2]["text"]
        assert "adapters: telegram ok" in status and "backends: echo closed" in status
        assert "queued: 0, in flight: 0" in status and "tokens today (UTC): 0" in status
        assert "admin telegram:42: block tg.43" in caplog.text
        assert "admin telegram:42: unblock tg.43" in caplog.text
        assert "/block refused: telegram:43 is not an admin" in caplog.text


async def test_discord_admin_commands(running):
    async with FakeDiscord() as fake:
        cfg = config("discord", discord_section(fake), {"platform": "discord", "user": str(ALICE)})
        await running(cfg, DiscordAdapter(cfg.adapters.discord, Metrics()))

        async def says(text: str, author: int, count: int) -> str:
            await fake.say(text, author=author, dm=True)
            await eventually(lambda: len(fake.posted) >= count, 5)
            return fake.posted[-1]["content"]

        assert await says("/status", BOB, 1) == refused("status")
        assert (await says("/status", ALICE, 2)).startswith("botbridge ")
        assert await says(f"/budget {BOB} 0", ALICE, 3) == (
            f"dc.{BOB}: 0 tokens used today; a personal budget of 0 tokens a day."
        )
        assert (await says("a question", BOB, 4)).startswith("You have used today's token budget")
        assert await says(f"/block {BOB}", ALICE, 5) == (
            f"Blocked dc.{BOB}: the bot ignores them until /unblock."
        )
        assert await says("let me in", BOB, 6) == DENIED
        # Discord shows a mention as @Name by the time it reaches the bridge: the id it is.
        assert (await says(f"/unblock <@{BOB}>", ALICE, 7)).endswith("not their @name")
        assert await says(f"/unblock discord:{BOB}", ALICE, 8) == f"Unblocked dc.{BOB}."
        await says(f"/budget {BOB} off", ALICE, 9)
        assert await says("thanks", BOB, 10) == f"[wx:dm:dc.{BOB}] thanks"


@pytest.mark.parametrize("leading", [" ", "<@UBOT> "])
async def test_slack_admin_commands(running, leading):
    # Slack's client takes a message starting with "/" as its own slash command: people type a
    # space first, or mention the bot in a channel.
    async with FakeSlack() as slack:
        section = {"bot_token": BOT_TOKEN, "app_token": APP_TOKEN, "api_base_url": slack.api_url}
        admin = {"platform": "slack", "workspace": "T024", "user": "U012"}
        cfg = config("slack", section, admin)
        await running(cfg, SlackAdapter(cfg.adapters.slack, Metrics()))

        async def says(text: str, who: str, count: int) -> str:
            if leading.startswith("<@"):
                await slack.push(mention(leading + text, user=who))
            else:
                await slack.push(im(leading + text, user=who))
            return (await slack.wait_posted(count))[-1]["text"]

        assert await says("/block U999", "U777", 1) == refused("block")
        assert (await says("/status", "U012", 2)).startswith("botbridge ")
        assert await says("/block U777", "U012", 3) == (
            "Blocked sl.T024.U777: the bot ignores them until /unblock."
        )
        assert await says("hello", "U777", 4) == DENIED
        assert await says("/unblock slack:T024:U777", "U012", 5) == "Unblocked sl.T024.U777."
        assert (await says("hello", "U777", 6)).endswith("hello")
