"""Each platform through several ingress processes and one worker (real subprocesses, one Redis):
Discord shards split over two ingress processes (DMs arrive on shard 0), Slack Socket Mode with a
connection per ingress process (a redelivery on the other connection is answered once), Telegram
webhooks on two ingress processes, and what an ingress does while Redis is away (503, so the
platform delivers again; readiness red), with nothing lost once Redis is back."""

from __future__ import annotations

import json
import uuid
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest

from tests.adapters.test_discord import discord_section as section_for_tests
from tests.conftest import REDIS_URL, redis_prefix
from tests.fakes.base import eventually
from tests.fakes.discord_gateway import ALICE, BOT_ID, FakeDiscord
from tests.fakes.redis_server import OwnRedis
from tests.fakes.slack_api import APP_TOKEN, BOT_TOKEN, FakeSlack, im
from tests.fakes.telegram_api import FakeTelegram
from tests.ops.scaleout_world import SlowLLM, session_user
from tests.ops.test_daemon import daemon

SECRET = "webhook-secret-0123456789"


def base(llm: SlowLLM, redis_url: str, prefix: str) -> dict[str, Any]:
    return {
        "bridge": {
            "store": {"type": "redis", "url": redis_url, "prefix": prefix, "partitions": 4},
            "claim_idle": 2.0,
        },
        "backends": {"main": {"type": "openai", "base_url": llm.base_url, "max_retries": 0}},
    }


def discord_section(discord: FakeDiscord, **extra: Any) -> dict[str, Any]:
    return {"adapters": {"discord": {**section_for_tests(discord), **extra}}}


async def started(stack: AsyncExitStack, tmp_path, configs: list[tuple[str, dict]]) -> list:
    found = []
    for i, (role, config) in enumerate(configs):
        process = await stack.enter_async_context(
            daemon(tmp_path, config, role=role, name=f"{role}{i}-")
        )
        found.append(process)
    for process in found:
        await process.ready(True, 60)
    return found


@pytest.fixture
async def prefix():
    """A prefix of this test's own on the shared Redis; its keys are deleted afterwards."""
    async with redis_prefix() as name:
        yield name


async def test_discord_shards_split_over_two_ingress_processes_and_dms_arrive_on_shard_0(
    tmp_path, prefix
):
    async with (
        FakeDiscord() as discord,
        SlowLLM(lambda text: 0.0) as llm,
        AsyncExitStack() as stack,
    ):

        def section(shard: int) -> dict[str, Any]:
            return discord_section(discord, shard_count=2, shard_ids=[shard])

        common = base(llm, REDIS_URL, prefix)
        await started(
            stack,
            tmp_path,
            [
                ("ingress", {**common, **section(0)}),
                ("ingress", {**common, **section(1)}),
                ("worker", {**common, **section(0)}),  # a worker opens no gateway at all
            ],
        )
        shards = sorted(tuple(s.shard) for s in discord.sessions.values())
        assert shards == [(0, 2), (1, 2)]  # one gateway session per ingress shard, none more

        await discord.say("hello in private", author=ALICE, dm=True)
        await discord.say(f"<@{BOT_ID}> hello in the guild", author=ALICE)
        await eventually(lambda: len(discord.posted) >= 2, 30)
        assert discord.posted_in(discord.dm_channel(ALICE)) == ["echo: hello in private"]
        assert discord.posted_in(discord.channel_id) == ["echo: hello in the guild"]


async def test_slack_socket_mode_on_two_ingress_processes_answers_a_redelivery_once(
    tmp_path, prefix
):
    async with FakeSlack() as slack, SlowLLM(lambda text: 0.0) as llm, AsyncExitStack() as stack:
        section = {
            "adapters": {
                "slack": {
                    "bot_token": BOT_TOKEN,
                    "app_token": APP_TOKEN,
                    "api_base_url": f"{slack.url}/api/",
                    "progress_reaction": None,
                }
            }
        }
        config = {**base(llm, REDIS_URL, prefix), **section}
        await started(
            stack, tmp_path, [("ingress", config), ("ingress", config), ("worker", config)]
        )
        await eventually(lambda: len(slack.sockets) == 2, 15)

        first = im("first question", user="U1", channel="D1")
        envelope = await slack.push(first, connection=0)
        await slack.wait_ack(envelope, 15)
        # Slack did not see the ack in time and delivers it again, on the other connection.
        again = await slack.push(first, connection=1, retry_attempt=1, retry_reason="timeout")
        await slack.wait_ack(again, 15)
        await slack.push(im("second question", user="U2", channel="D2"), connection=1)
        await eventually(lambda: len(slack.posted) >= 2, 30)
        await slack.push(im("third question", user="U1", channel="D1"), connection=0)
        await eventually(lambda: len(slack.posted) >= 3, 30)
        texts = sorted(p["text"] for p in slack.posted)
        assert texts == ["echo: first question", "echo: second question", "echo: third question"]


def webhook_update(
    telegram: FakeTelegram, update_id: int, session: int, text: str
) -> dict[str, Any]:
    return telegram.complete({"update_id": update_id, **telegram.dm(session_user(session), text)})


async def post_update(process, update: dict[str, Any]) -> int:
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(
            f"{process.http.base_url}/telegram/webhook",
            content=json.dumps(update),
            headers={
                "Content-Type": "application/json",
                "X-Telegram-Bot-Api-Secret-Token": SECRET,
            },
        )
    return response.status_code


async def test_telegram_webhooks_on_two_ingress_processes_and_503_while_redis_is_away(tmp_path):
    async with (
        OwnRedis(tmp_path / "redis") as redis,
        FakeTelegram() as telegram,
        SlowLLM(lambda text: 0.0) as llm,
        AsyncExitStack() as stack,
    ):
        section = {
            "adapters": {
                "telegram": {
                    "token": telegram.token,
                    "api_base_url": telegram.base_url,
                    "api_file_url": telegram.file_url,
                    "mode": "webhook",
                    "webhook_url": "https://bot.example.com/telegram/webhook",
                    "secret_token": SECRET,
                }
            }
        }
        config = {**base(llm, redis.url, f"hook-{uuid.uuid4().hex[:6]}"), **section}
        one, two, _ = await started(
            stack, tmp_path, [("ingress", config), ("ingress", config), ("worker", config)]
        )
        # Behind a load balancer: updates reach either process; a retried one reaches the other.
        assert await post_update(one, webhook_update(telegram, 1, 0, "s0 m0")) == 200
        assert await post_update(two, webhook_update(telegram, 1, 0, "s0 m0")) == 200
        assert await post_update(two, webhook_update(telegram, 2, 1, "s1 m0")) == 200
        await eventually(lambda: len(telegram.sent) >= 2, 30)

        await redis.kill()
        assert (
            await post_update(one, webhook_update(telegram, 3, 0, "s0 m1")) == 503
        )  # Telegram retries
        body = await one.ready(False, 15)
        assert body["components"]["store"]["ready"] is False
        await redis.start()
        await one.ready(True, 30)
        assert await post_update(one, webhook_update(telegram, 3, 0, "s0 m1")) == 200  # the retry
        await eventually(lambda: len(telegram.sent) >= 3, 30)
        assert sorted(telegram.texts()) == ["echo: s0 m0", "echo: s0 m1", "echo: s1 m0"]
        assert [c.params["url"] for c in telegram.api_calls("setWebhook")] == [
            "https://bot.example.com/telegram/webhook"
        ] * 2  # each ingress registers the same URL; the worker none
        assert not telegram.api_calls("getUpdates") and not telegram.api_calls("deleteWebhook")


async def test_discord_messages_arriving_while_redis_is_away_are_answered_once_it_is_back(
    tmp_path,
):
    async with (
        OwnRedis(tmp_path / "redis") as redis,
        FakeDiscord() as discord,
        SlowLLM(lambda text: 0.0) as llm,
        AsyncExitStack() as stack,
    ):
        config = {**base(llm, redis.url, "dc"), **discord_section(discord)}
        ingress, _ = await started(stack, tmp_path, [("ingress", config), ("worker", config)])
        await discord.say("before", author=ALICE, dm=True)
        await eventually(lambda: len(discord.posted) >= 1, 30)
        await redis.kill()
        await ingress.ready(False, 15)
        # Discord's gateway never sends a message twice: the ingress holds these meanwhile.
        await discord.say("during one", author=ALICE, dm=True)
        await discord.say("during two", author=ALICE, dm=True)
        await eventually(lambda: any("holding them" in line for line in ingress.lines()), 15)
        await redis.start()
        await eventually(lambda: len(discord.posted) >= 3, 30)
        assert discord.posted_in(discord.dm_channel(ALICE)) == [
            "echo: before", "echo: during one", "echo: during two"
        ]  # fmt: skip
