"""Faults, part 1: the platforms deliver accepted events again, at random and concurrently —
Telegram re-POSTs a webhook update, Slack retries an HTTP event (X-Slack-Retry-Num) or redelivers
a Socket Mode envelope, Discord dispatches a message again and replays seen events on RESUME —
and every question is still answered exactly once. Real adapters, real bridge, fake platforms."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from adapters.discord import DiscordAdapter
from adapters.slack import SlackAdapter
from bridge.metrics import Metrics
from tests.adapters.telegram_world import start_world
from tests.conftest import make_config
from tests.fakes.base import eventually
from tests.fakes.discord_gateway import ALICE, TOKEN, FakeDiscord
from tests.fakes.slack_api import APP_TOKEN, BOT_TOKEN, SIGNING_SECRET, FakeSlack, SlackEvents, im
from tests.fakes.telegram_api import FakeTelegram, user
from tests.ops.faults import REDELIVERIES, SESSIONS, TIMEOUT, report, rng

pytestmark = [pytest.mark.faults, pytest.mark.timeout(TIMEOUT)]

PER_PLATFORM = REDELIVERIES // 4  # Telegram, Slack over HTTP, Slack's socket, Discord
ECHO = {"echo": {"type": "echo"}}


def plan(name: str, questions: int) -> list[int]:
    """Which question each delivery carries: every question once, plus PER_PLATFORM repeats
    at random, shuffled (a repeat may even come before its first copy is answered)."""
    random = rng(name)
    deliveries = list(range(questions)) + [random.randrange(questions) for _ in range(PER_PLATFORM)]
    random.shuffle(deliveries)
    return deliveries


async def deliver_all(deliveries: list[int], send: Callable[[int, int], Awaitable[Any]]) -> None:
    """Send the deliveries ten at a time, concurrently; `send(question, copy)`."""
    copies: Counter[int] = Counter()
    batch = []
    for number in deliveries:
        batch.append(send(number, copies[number]))
        copies[number] += 1
        if len(batch) == 10:
            await asyncio.gather(*batch)
            batch = []
    await asyncio.gather(*batch)


def once_each(texts: list[str], questions: int) -> Counter[str]:
    counts = Counter(texts)
    assert len(texts) == questions, f"{len(texts)} posts for {questions} questions"
    assert all(count == 1 for count in counts.values()), counts.most_common(3)
    return counts


async def test_telegram_webhook_updates_sent_again_are_answered_once(running):
    questions = PER_PLATFORM // 2
    async with FakeTelegram() as fake:
        world = await start_world(running, fake, "webhook")
        people = [user(1000 + n, f"U{n}") for n in range(SESSIONS)]
        updates = [
            fake.complete(fake.dm(people[n % SESSIONS], f"question {n}")) for n in range(questions)
        ]

        async def send(number: int, copy: int) -> None:
            assert await world.post(updates[number]) == 200  # Telegram retries until a 200

        deliveries = plan("telegram", questions)
        await deliver_all(deliveries, send)
        await eventually(lambda: len(fake.sent) >= questions, 30)
        assert await world.bridge.router.idle(10)
        once_each(fake.texts(), questions)
    duplicates = world.bridge.metrics.messages.labels("telegram", "duplicate")._value.get()
    assert duplicates == len(deliveries) - questions
    report("telegram-redelivery", deliveries=len(deliveries), questions=questions,
           duplicate_posts=0)  # fmt: skip


@pytest.mark.parametrize("mode", ["http", "socket"])
async def test_slack_events_delivered_again_are_answered_once(running, mode):
    questions = PER_PLATFORM // 2
    async with FakeSlack() as slack:
        section: dict[str, Any] = {"bot_token": BOT_TOKEN, "api_base_url": slack.api_url,
                                   "progress_reaction": None}  # fmt: skip
        raw: dict[str, Any] = {"backends": ECHO, "adapters": {"slack": section}}
        if mode == "http":
            section["signing_secret"] = SIGNING_SECRET
            raw["http"] = {"enabled": True, "port": 0}
        else:
            section["app_token"] = APP_TOKEN
        config = make_config(raw)
        bridge = await running(config, SlackAdapter(config.adapters.slack, Metrics()))
        payloads = [
            im(f"question {n}", user=f"U{n % SESSIONS}", channel=f"D{n % SESSIONS}")
            for n in range(questions)
        ]
        events = SlackEvents(f"http://127.0.0.1:{bridge.http.port}/slack/events") if bridge.http else None

        async def send(number: int, copy: int) -> None:
            if events is not None:
                response = await events.post(payloads[number], retry_num=copy or None)
                assert response.status_code == 200
            else:
                envelope = await slack.push(
                    payloads[number], retry_attempt=copy, retry_reason="timeout" if copy else ""
                )
                await slack.wait_ack(envelope, timeout=10)

        deliveries = plan(f"slack-{mode}", questions)
        await deliver_all(deliveries, send)
        await eventually(lambda: len(slack.posted) >= questions, 30)
        assert await bridge.router.idle(10)
        once_each([p["text"] for p in slack.posted], questions)
    report(f"slack-{mode}-redelivery", deliveries=len(deliveries), questions=questions,
           duplicate_posts=0)  # fmt: skip


async def test_discord_messages_dispatched_again_and_replayed_on_resume_are_answered_once(
    running,
):
    questions = PER_PLATFORM // 2
    async with FakeDiscord() as fake:
        section = {"token": TOKEN, "api_base_url": fake.api_base_url, "guild_ready_timeout": 0.05,
                   "ready_timeout": 10, "identify_delay": 0}  # fmt: skip
        config = make_config({"backends": ECHO, "adapters": {"discord": section}})
        adapter = DiscordAdapter(config.adapters.discord, Metrics())
        bridge = await running(config, adapter)
        fake.replay_seen = 5  # each RESUME also replays the last five events the bot had seen
        random = rng("discord-resume")
        sent: dict[int, dict[str, Any]] = {}
        resumes = 0

        async def send(number: int, copy: int) -> None:
            nonlocal resumes
            if copy == 0:
                sent[number] = await fake.say(f"question {number}", dm=True, author=ALICE)
            else:
                await fake.redeliver(sent[number])
            if random.random() < 0.02:  # now and then the gateway drops the connection
                resumes += 1
                await fake.disconnect()
                await eventually(lambda: adapter.health().ready and fake.connections, 10)

        deliveries = plan("discord", questions)
        # Copies need their first delivery dispatched already: one at a time here.
        copies: Counter[int] = Counter()
        for number in deliveries:
            await send(number, copies[number])
            copies[number] += 1
        await eventually(lambda: len(fake.posted) >= questions, 30)
        assert await bridge.router.idle(10)
        once_each([p["content"] for p in fake.posted], questions)
    report("discord-redelivery", deliveries=len(deliveries), questions=questions,
           resumes=resumes, duplicate_posts=0)  # fmt: skip
