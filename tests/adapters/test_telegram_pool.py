"""The typing indicator and python-telegram-bot's connection pool: stopping hundreds of indicators
while their sendChatAction is in flight must leave the pool whole, so that every later send still
goes through (cancelling them mid-request leaked pooled connections until every request failed
with "Pool timeout: All connections in the connection pool are occupied")."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import pytest

from adapters.telegram import TelegramAdapter
from bridge.types import ChatKind, Inbound
from tests.adapters.telegram_world import start_world
from tests.fakes.base import eventually
from tests.fakes.telegram_api import FakeTelegram, user

INDICATORS = 300  # more than PTB's 256 pooled connections: some wait for one, too
ROUNDS = 2


@pytest.fixture
async def fake():
    async with FakeTelegram() as server:
        yield server


def busy(adapter: TelegramAdapter) -> tuple[int, int]:
    """(requests under way, pooled connections handed out and not given back): both 0 when the
    pool is whole and quiet. PTB's request object for everything but getUpdates is the
    adapter's `AiohttpRequest`; a leaked connection would stay acquired from its connector."""
    request: Any = adapter._bot.request
    return request.in_flight, len(request._session.connector._acquired)


def dm(chat_id: int) -> Inbound:
    return Inbound(platform="telegram", chat_id=str(chat_id), sender_id=str(chat_id), text="hi",
                   kind=ChatKind.DM, event_id=f"e{chat_id}")  # fmt: skip


async def test_hundreds_of_indicators_stopped_mid_request_leave_the_pool_whole(fake, running):
    world = await start_world(running, fake, "polling", typing_interval=0.01)
    adapter = world.adapter
    for n in range(INDICATORS):  # chats the fake knows, so sendChatAction is accepted
        fake.dm(user(1000 + n, f"U{n}"), "hello")
    shuffle = random.Random(15).shuffle
    for _ in range(ROUNDS):
        await answers_ready_while_typing_is_in_flight(fake, adapter, shuffle)

    # Every indicator finished its request; nothing is left holding a pooled connection.
    await eventually(lambda: busy(adapter) == (0, 0), 30, every=0.05)
    await eventually(lambda: adapter._typing.running == 0, 30, every=0.05)
    # And the pool serves: a user's question is answered through it, without a pool timeout.
    started = time.monotonic()
    await world.send(fake.dm(user(42, "Alice"), "still there?"))
    [answer] = await fake.wait_sent(1, timeout=10)
    assert answer["text"] == "[wx:dm:tg.42] still there?"
    assert time.monotonic() - started < 5
    await eventually(lambda: busy(adapter) == (0, 0), 10, every=0.05)


async def answers_ready_while_typing_is_in_flight(fake, adapter, shuffle) -> None:
    """Hundreds of answers being prepared, each with its typing indicator; the fake holds every
    sendChatAction, so each is surely in flight (or queued for a connection: more indicators
    than pooled connections) when its answer is ready. The answers become ready in a random
    order, and halfway through the fake starts answering: requests end, connections free up and
    are handed to queued requests, while indicators keep stopping."""
    before = len(fake.api_calls("sendChatAction"))
    fake.hold("sendChatAction")
    ready = [asyncio.Event() for _ in range(INDICATORS)]

    async def answer_being_prepared(n: int) -> None:
        async with adapter.working(dm(1000 + n)):
            await ready[n].wait()  # the backend answers when the test says so

    tasks = [asyncio.create_task(answer_being_prepared(n)) for n in range(INDICATORS)]
    await fake.wait_for(
        lambda calls: sum(c.path.endswith("/sendChatAction") for c in calls) >= before + 256, 30
    )
    order = list(range(INDICATORS))
    shuffle(order)
    for i, n in enumerate(order):
        ready[n].set()
        if i % 10 == 0:
            await asyncio.sleep(0)  # let some stop before the next ones are ready
        if i == INDICATORS // 2:
            fake.release("sendChatAction")
    await asyncio.wait_for(asyncio.gather(*tasks), 30)
    fake.release("sendChatAction")


async def test_typing_is_refreshed_until_the_answer_and_not_after(fake, running):
    world = await start_world(running, fake, "polling", typing_interval=0.05)
    fake.dm(user(42, "Alice"), "hello")
    inbound = dm(42)
    async with world.adapter.working(inbound):
        await fake.wait_for(
            lambda calls: sum(c.path.endswith("/sendChatAction") for c in calls) >= 3, 10
        )
    count = len(fake.api_calls("sendChatAction"))
    await asyncio.sleep(0.2)  # four refresh intervals: none may follow the answer
    assert len(fake.api_calls("sendChatAction")) == count
    assert world.adapter._typing.running == 0


async def test_an_instant_answer_sends_no_typing_and_a_slow_one_does(fake, running, openai_fake):
    backends = {"main": {"type": "openai", "base_url": openai_fake.base_url}}
    world = await start_world(running, fake, "polling", backends=backends, typing_delay=0.3)
    await world.send(fake.dm(user(42, "Alice"), "quick"))
    await fake.wait_sent(1)
    await asyncio.sleep(0.4)  # past the delay: a timer left running would show typing now
    assert fake.api_calls("sendChatAction") == []
    assert world.adapter._typing.running == 0

    openai_fake.slow_next(1.0)
    await world.send(fake.dm(user(42, "Alice"), "think hard"))
    await fake.wait_sent(2)
    kinds = [c.method for c in fake.api_calls() if c.method in ("sendChatAction", "sendMessage")]
    assert kinds[1:] == ["sendChatAction"] * (len(kinds) - 2) + ["sendMessage"]
    assert len(kinds) >= 3  # shown after 0.3 s, refreshed every 0.05 s until the answer
