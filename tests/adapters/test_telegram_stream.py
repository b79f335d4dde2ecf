"""Streamed answers on Telegram, through python-telegram-bot against the fake Bot API and the fake
OpenAI server writing its answer a few characters at a time.

Alice (42) is answered by a streaming backend, Bob (43) by the same server without streaming, so a
scene can hold Alice's final messages against the non-streamed formatting of the same answer.
"""

from __future__ import annotations

import pytest

from adapters.telegram import TelegramAdapter
from bridge.metrics import Metrics
from tests.adapters.streaming_world import MARKDOWN, routed_config, writing_model
from tests.adapters.telegram_world import telegram_section
from tests.fakes.telegram_api import FakeTelegram, group, user, utf16_len

ALICE = user(42, "Alice")
BOB = user(43, "Bob")
TEAM = group(-1001234567890, "Team")



@pytest.fixture
async def telegram():
    async with FakeTelegram() as server:
        yield server


@pytest.fixture
async def llm():
    async with writing_model() as server:
        yield server


async def start(running, telegram, llm, **streaming):
    streaming.setdefault("min_interval", 0.1)
    config = routed_config(llm, "telegram", telegram_section(telegram), "42", **streaming)
    assert config.adapters.telegram is not None
    metrics = Metrics()
    bridge = await running(config, TelegramAdapter(config.adapters.telegram, metrics))
    return bridge.metrics, metrics


def shown(message: dict) -> tuple[str, list]:
    return message["text"], message.get("entities") or []


def sent_to(telegram: FakeTelegram, chat: int) -> list[dict]:
    return [m for m in telegram.sent if m["chat"]["id"] == chat]


async def test_dm_draft_grows_then_one_message_equals_the_whole_answers(telegram, llm, running):
    await start(running, telegram, llm)
    await telegram.push(telegram.dm(ALICE, "plan please"), telegram.dm(BOB, "plan please"))
    await telegram.wait_for(lambda _: len(sent_to(telegram, 42)) and len(sent_to(telegram, 43)), 20)
    [streamed], [whole] = sent_to(telegram, 42), sent_to(telegram, 43)
    assert shown(streamed) == shown(whole)  # entities and all
    drafts = [d for d in telegram.drafts if d["chat_id"] == 42]
    assert drafts and all(d["draft_id"] == drafts[0]["draft_id"] for d in drafts)
    finished = llm.finished[0] if len(llm.calls) == 1 else min(llm.finished)
    assert drafts[0]["at"] < finished  # the user read the start while the model still wrote
    assert not [d for d in telegram.drafts if d["chat_id"] == 43]  # Bob's backend is whole


async def test_a_group_answer_is_one_message_edited_in_place(telegram, llm, running):
    await start(running, telegram, llm, groups=True)
    asked = telegram.group_message(TEAM, ALICE, "@bridge_bot plan please")
    await telegram.push(asked)
    await telegram.wait_for(lambda _: llm.finished and len(telegram.edits) >= 1, 20)
    await telegram.wait_for(lambda _: shown(telegram.sent[0])[0].endswith("for asking."), 20)
    [message] = telegram.sent
    assert message["reply_to"] == asked["message"]["message_id"]
    assert telegram.drafts == []  # no drafts outside private chats
    assert {e["message_id"] for e in telegram.edits} == {message["message_id"]}
    await telegram.push(telegram.dm(BOB, "plan please"))
    await telegram.wait_for(lambda _: sent_to(telegram, 43), 20)
    assert shown(message) == shown(sent_to(telegram, 43)[0])


async def test_groups_are_answered_whole_unless_turned_on(telegram, llm, running):
    await start(running, telegram, llm)
    await telegram.push(telegram.group_message(TEAM, ALICE, "@bridge_bot plan please"))
    await telegram.wait_for(lambda _: telegram.sent, 20)
    assert telegram.edits == [] and telegram.drafts == []
    assert llm.calls[0].json.get("stream") is None  # not even asked to stream


async def test_a_429_on_an_edit_is_waited_out_and_the_text_is_complete(telegram, llm, running):
    bridge_metrics, adapter_metrics = await start(running, telegram, llm, groups=True)
    llm.stream.delay = 0.05
    telegram.rate_limit_next("editMessageText", retry_after=1)
    await telegram.push(telegram.group_message(TEAM, ALICE, "@bridge_bot plan please"))
    await telegram.wait_for(lambda _: llm.finished, 20)
    await telegram.wait_for(lambda _: shown(telegram.sent[0])[0].endswith("for asking."), 20)
    assert len(telegram.sent) == 1
    # The 429 hit either an update (the next waited) or the final edit (retried after 1 s).
    update = bridge_metrics.registry.get_sample_value(
        "botbridge_stream_updates_total", {"platform": "telegram", "outcome": "rate_limited"}
    )
    final = adapter_metrics.registry.get_sample_value(
        "botbridge_platform_send_retries_total", {"platform": "telegram", "reason": "rate_limited"}
    )
    assert (update or 0) + (final or 0) == 1


async def test_a_ten_thousand_character_answer_ends_as_split_messages_in_order(
    telegram, llm, running
):
    long = "\n\n".join(f"Paragraph {i}: " + "lorem ipsum dolor sit amet " * 12 for i in range(30))
    assert len(long) > 10_000
    llm.reply = lambda body, headers: long
    llm.stream.chunk = 120
    llm.stream.delay = 0.005
    await start(running, telegram, llm)
    await telegram.push(telegram.dm(ALICE, "long"), telegram.dm(BOB, "long"))
    await telegram.wait_for(
        lambda _: sum(len(m["text"]) for m in sent_to(telegram, 42)) >= 10_000
        and sum(len(m["text"]) for m in sent_to(telegram, 43)) >= 10_000, 30
    )
    streamed, whole = sent_to(telegram, 42), sent_to(telegram, 43)
    assert [shown(m) for m in streamed] == [shown(m) for m in whole]
    assert len(streamed) == 3 and all(utf16_len(m["text"]) <= 4096 for m in streamed)
    assert telegram.drafts and all(utf16_len(d["text"]) <= 4096 for d in telegram.drafts)


async def test_think_never_appears_in_any_draft_or_message(telegram, llm, running):
    llm.reply = lambda body, headers: "<think>the SECRET plan is</think>" + MARKDOWN
    llm.stream.chunk = 3
    await start(running, telegram, llm, min_chars=1)
    await telegram.push(telegram.dm(ALICE, "plan please"))
    await telegram.wait_for(lambda _: telegram.sent, 20)
    seen = [d["text"] for d in telegram.drafts] + [m["text"] for m in telegram.sent]
    assert len(seen) >= 2
    assert not [t for t in seen if "SECRET" in t or "think" in t.lower()]


async def test_refused_drafts_fall_back_to_an_edited_message(telegram, llm, running):
    telegram.drafts_supported = False
    await start(running, telegram, llm)
    for number in range(2):
        await telegram.push(telegram.dm(ALICE, f"plan please {number}"))
        await telegram.wait_for(
            lambda _, n=number: len(telegram.sent) > n
            and telegram.sent[n]["text"].endswith("for asking."), 20
        )
    # Each answer is one message (shown early, then edited or left as it was), never two; and
    # refused once, drafts were not tried again for the second answer.
    assert len(telegram.sent) == 2
    assert len(telegram.api_calls("sendMessageDraft")) == 1


async def test_a_stalled_stream_ends_with_what_arrived_and_the_apology(telegram, llm, running):
    llm.stream.stall_after = 8  # 48 characters, then silence
    await start(running, telegram, llm, idle_timeout=0.5)
    try:
        await telegram.push(telegram.dm(ALICE, "plan please"))
        await telegram.wait_for(lambda _: telegram.sent, 20)
    finally:
        llm.release()
    [message] = telegram.sent
    assert message["text"].startswith("✏ Plan\n\nHere is bold")  # what arrived, formatted
    assert message["text"].endswith("Please try again in a moment.")
