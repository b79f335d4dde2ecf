"""Delivery on Telegram, through the real python-telegram-bot adapter and the fake Bot API: what
happens when a send fails, is lost, or was cut short by a crash; what a restart resumes."""

from __future__ import annotations

import logging
import time

import aiohttp
import pytest
from telegram.error import NetworkError

from adapters._telegram_request import NotSent
from adapters._telegram_send import maybe_sent
from bridge.journal import Reply
from bridge.store.sqlite import SqliteStore
from bridge.types import ChatKind, Inbound, dedup_id
from tests.adapters.telegram_world import start_world
from tests.fakes.base import eventually
from tests.fakes.telegram_api import FakeTelegram, group, user

ALICE = user(42, "Alice")
TEAM = group(-1001234567890, "Team")
FAST = {"delivery": {"retry_initial": 0.01, "retry_max": 0.05, "unready_failures": 3}}


@pytest.fixture
async def fake():
    async with FakeTelegram() as server:
        yield server


def answered(world) -> float:
    return world.bridge.metrics.messages.labels("telegram", "answered")._value.get()


def repeated(world) -> float:
    return world.bridge.metrics.possibly_repeated.labels("telegram")._value.get()


async def test_a_send_whose_answer_was_lost_is_sent_again_once_and_counted(fake, running, caplog):
    caplog.set_level(logging.INFO)
    world = await start_world(running, fake, "polling", bridge=FAST)
    # Telegram posts the message, then the connection breaks before the bot reads the answer.
    fake.lose_answer_next(path=f"/bot{fake.token}/sendMessage")
    await world.send(fake.dm(ALICE, "hello?"))
    await eventually(lambda: answered(world) == 1, 10)
    # Telegram has no idempotency key: the part may now be there twice, and that is counted.
    assert fake.texts() == ["[wx:dm:tg.42] hello?"] * 2
    assert len(fake.api_calls("sendMessage")) == 2  # one resend, not a blind retry loop
    assert repeated(world) == 1
    assert "may have been posted already and is posted again" in caplog.text


async def test_a_5xx_beyond_the_adapter_retries_keeps_the_answer_until_it_goes_through(
    fake, running
):
    world = await start_world(running, fake, "polling", bridge=FAST, send_retries=1)
    fake.fail_method("sendMessage", 502, "Bad Gateway", times=5)
    await world.send(fake.dm(ALICE, "still there?"))
    await eventually(lambda: answered(world) == 1, 10)
    assert fake.texts() == ["[wx:dm:tg.42] still there?"]  # not lost, and once
    assert repeated(world) == 0  # a 502 means Telegram posted nothing
    assert world.bridge.metrics.delivery_retries.labels("telegram")._value.get() >= 2


async def test_readiness_is_red_while_sends_keep_failing(fake, running):
    world = await start_world(running, fake, "polling", bridge=FAST, send_retries=0)
    await eventually(lambda: world.adapter.health().ready, 10)
    fake.fail_method("sendMessage", 500, "Internal Server Error", times=10_000)
    await world.send(fake.dm(ALICE, "hello?"))

    async def telegram(ready: bool):
        report = await world.bridge.readiness()
        state = report["components"]["telegram"]
        return state if state["ready"] is ready else None

    red = await eventually(lambda: telegram(False), 10)
    assert "sends failing" in red["detail"] and "Internal Server Error" in red["detail"]
    fake.faults.clear()
    await eventually(lambda: answered(world) == 1, 10)
    assert (await telegram(True))["detail"] == "polling"


async def test_a_kicked_bot_makes_the_reply_undeliverable_counted_and_not_retried(
    fake, running
):
    world = await start_world(running, fake, "polling", bridge=FAST)
    fake.forbid_chat(TEAM["id"])
    await world.send(fake.group_message(TEAM, ALICE, "@bridge_bot hi"))
    undeliverable = world.bridge.metrics.messages.labels("telegram", "undeliverable")
    await eventually(lambda: undeliverable._value.get() == 1, 10)
    assert len(fake.api_calls("sendMessage")) == 1


def test_which_failures_may_have_posted_the_message():
    def failed(cause: Exception) -> NetworkError:
        try:
            raise NetworkError("failed") from cause
        except NetworkError as exc:
            return exc

    # python-telegram-bot's requests go over aiohttp (adapters/_telegram_request.py).
    assert maybe_sent(failed(aiohttp.SocketTimeoutError("slow")))  # read timeout: it went out
    assert maybe_sent(failed(aiohttp.ServerDisconnectedError()))  # cut before the answer
    assert maybe_sent(failed(TimeoutError()))
    assert not maybe_sent(NotSent("connection refused"))  # no connection was ever made
    assert not maybe_sent(NetworkError("Bad Gateway"))  # Telegram answered 502


# ------------------------------------------------------------------------------- after a crash


def inbound(text: str, message_id: int) -> Inbound:
    return Inbound(
        platform="telegram", chat_id="42", sender_id="42", text=text, kind=ChatKind.DM,
        event_id=f"7000001.{900 + message_id}", message_id=str(message_id),
        received_at=time.time(),
    )  # fmt: skip


async def crashed_state(tmp_path, *steps) -> str:
    """A state file as a killed daemon left it: each step is (inbound, how far it got)."""
    path = str(tmp_path / "state.sqlite3")
    store = SqliteStore(path)
    await store.open()
    for message, reply, sent in steps:
        event = dedup_id(message)
        await store.journal.accept(event, message.to_dict(), ttl=3600)
        if reply is not None:
            await store.journal.answered(event, reply, None)
            for part in range(sent):
                await store.journal.sent(event, part, str(500 + part))
    await store.close()
    return path


async def test_after_a_crash_only_the_unsent_parts_go_out_and_the_llm_is_not_asked(
    fake, running, openai_fake, tmp_path
):
    fake.chats[42] = {"id": 42, "type": "private", "first_name": "Alice"}
    reply = Reply(("part one", "part two", "part three"), "answer")
    path = await crashed_state(tmp_path, (inbound("a long question", 1), reply, 1))
    backends = {"main": {"type": "openai", "base_url": openai_fake.base_url}}
    world = await start_world(
        running, fake, "polling", backends=backends, bridge={**FAST, "store": {"path": path}}
    )
    await eventually(lambda: answered(world) == 1, 10)
    # Part two was "sending" when the process died: it may be there already. Telegram cannot
    # tell, so it is posted again, once, and counted; part one is never posted again.
    assert fake.texts() == ["part two", "part three"]
    assert repeated(world) == 1
    assert openai_fake.calls == []


async def test_recovered_messages_are_answered_before_new_ones_from_the_same_person(
    fake, running, tmp_path
):
    fake.chats[42] = {"id": 42, "type": "private", "first_name": "Alice"}
    path = await crashed_state(tmp_path, (inbound("asked before the crash", 1), None, 0))
    await fake.push(fake.dm(ALICE, "asked after the restart"))  # waiting at the first poll
    world = await start_world(running, fake, "polling", bridge={"store": {"path": path}})
    await eventually(lambda: answered(world) == 2, 10)
    assert fake.texts() == [
        "[wx:dm:tg.42] asked before the crash",
        "[wx:dm:tg.42] asked after the restart",
    ]
