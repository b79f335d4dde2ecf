"""Telegram end to end: the fake Bot API ⇄ python-telegram-bot ⇄ TelegramAdapter ⇄ a real Bridge.

Every scene runs in polling and in webhook mode; the echo backend answers
`[{session_key}] {text}`, so the session key and the text the LLM saw are what the user reads.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.adapters.telegram_world import World, start_world
from tests.fakes.telegram_api import FakeTelegram, group, user, utf16_len

ALICE = user(42, "Alice")
BOB = user(43, "Bob")
TEAM = group(-1001234567890, "Team")
OTHER_BOT = user(99, "Weather", username="weather_bot", is_bot=True)


@pytest.fixture
async def fake():
    async with FakeTelegram() as server:
        yield server


@pytest.fixture(params=["polling", "webhook"])
async def world(request, fake, running) -> World:
    return await start_world(running, fake, request.param)


async def test_dm_is_answered_plainly(world: World):
    await world.send(world.fake.dm(ALICE, "hello there"))
    [answer] = await world.fake.wait_sent(1)
    assert answer["text"] == "[wx:dm:tg.42] hello there"
    assert answer["chat"]["id"] == 42
    assert "reply_to" not in answer


async def test_group_mention_is_answered_as_a_reply_per_user(world: World):
    fake = world.fake
    ask_alice = fake.group_message(TEAM, ALICE, "@bridge_bot what time is it?")
    ask_bob = fake.group_message(TEAM, BOB, "And for me, @Bridge_Bot?")
    await world.send(fake.group_message(TEAM, ALICE, "just chatting, no bot here"), ask_alice)
    await world.send(ask_bob)
    answers = await fake.wait_sent(2)
    await asyncio.sleep(0)
    by_reply = {m["reply_to"]: m["text"] for m in answers}
    assert by_reply == {
        ask_alice["message"]["message_id"]: (
            "[wx:group:tg.-1001234567890:user:tg.42] what time is it?"
        ),
        ask_bob["message"]["message_id"]: "[wx:group:tg.-1001234567890:user:tg.43] And for me, ?",
    }
    assert len(fake.sent) == 2  # the chatter without a mention got nothing


async def test_a_bare_mention_gets_the_help(world: World):
    fake = world.fake
    asked = fake.group_message(TEAM, ALICE, "@bridge_bot")
    await world.send(asked)
    [answer] = await fake.wait_sent(1)
    assert "/reset starts a fresh conversation" in answer["text"]
    assert answer["reply_to"] == asked["message"]["message_id"]


async def test_a_mention_with_a_lone_surrogate_is_answered_and_nothing_stalls(world: World):
    # Half a surrogate pair (a client cut an emoji in two): PTB's parse_entity cannot encode it.
    fake = world.fake
    await world.send(fake.group_message(TEAM, ALICE, "@bridge_bot broken \ud83d emoji"))
    await world.send(fake.dm(BOB, "next"))
    answers = await fake.wait_sent(2)
    assert sorted(m["text"] for m in answers) == [
        "[wx:dm:tg.43] next",
        "[wx:group:tg.-1001234567890:user:tg.42] broken \ufffd emoji",
    ]


async def test_reply_to_the_bot_is_answered(world: World):
    fake = world.fake
    await world.send(fake.group_message(TEAM, ALICE, "@bridge_bot first"))
    [first] = await fake.wait_sent(1)
    follow_up = fake.group_message(TEAM, ALICE, "and then?", reply_to=first)
    await world.send(follow_up)
    answers = await fake.wait_sent(2)
    key = "wx:group:tg.-1001234567890:user:tg.42"
    # The echo backend keeps no history, so it is told what the reply answers.
    assert answers[1]["text"] == f"[{key}] [In reply to you: [{key}] first]\nand then?"
    assert answers[1]["reply_to"] == follow_up["message"]["message_id"]


async def test_bots_edits_and_unaddressed_messages_are_not_answered(world: World):
    fake = world.fake
    chatter = fake.group_message(TEAM, BOB, "lunch?")
    await world.send(
        fake.group_message(TEAM, OTHER_BOT, "@bridge_bot sunny, 21°C"),
        fake.dm(OTHER_BOT, "hello fellow bot"),
        fake.group_message(TEAM, ALICE, "/help@weather_bot"),
        fake.group_message(TEAM, ALICE, "reply to Bob, not the bot", reply_to=chatter["message"]),
        {"edited_message": fake.dm(ALICE, "edited text")["message"]},
        fake.dm(ALICE, "the only question"),  # the marker: everything before it was judged
    )
    [answer] = await fake.wait_sent(1)
    assert answer["text"] == "[wx:dm:tg.42] the only question"
    await world.bridge.router.idle(2)
    assert len(fake.sent) == 1


async def test_commands_addressed_to_the_bot(world: World):
    fake = world.fake
    await world.send(fake.group_message(TEAM, ALICE, "/reset@bridge_bot"))
    [done] = await fake.wait_sent(1)
    assert done["text"].startswith("Done")
    # Privacy mode is on (the fake's default): a bare command reaching the bot is for it.
    await world.send(fake.group_message(TEAM, ALICE, "/help"))
    answers = await fake.wait_sent(2)
    assert "/reset" in answers[1]["text"]


async def test_same_update_twice_is_answered_once(world: World):
    fake = world.fake
    update = fake.complete(fake.dm(ALICE, "only once please"))
    await world.send(update, update)
    await world.send(fake.dm(ALICE, "marker"))
    answers = await fake.wait_sent(2)
    await world.bridge.router.idle(2)
    assert [m["text"] for m in fake.sent] == [
        "[wx:dm:tg.42] only once please",
        "[wx:dm:tg.42] marker",
    ]
    assert answers


async def test_forum_topic_answer_goes_to_the_same_topic(world: World):
    fake = world.fake
    forum = group(-1009876543210, "Forum", forum=True)
    await world.send(fake.group_message(forum, ALICE, "@bridge_bot in a topic", thread_id=77))
    [answer] = await fake.wait_sent(1)
    assert answer["message_thread_id"] == 77


async def test_markdown_arrives_as_entities(world: World):
    fake = world.fake
    await world.send(fake.dm(ALICE, "**bold** and `code`"))
    [answer] = await fake.wait_sent(1)
    assert answer["text"] == "[wx:dm:tg.42] bold and code"
    kinds = {(e["type"], e["offset"], e["length"]) for e in answer["entities"]}
    assert kinds == {("bold", 14, 4), ("code", 23, 4)}


async def test_rejected_formatting_is_resent_plain(world: World):
    fake = world.fake
    fake.reject_entities_next()
    await world.send(fake.dm(ALICE, "**bold** [link](https://example.org)"))
    [answer] = await fake.wait_sent(1)
    assert answer["text"] == "[wx:dm:tg.42] **bold** [link](https://example.org)"
    assert "entities" not in answer
    first, _plain = fake.api_calls("sendMessage")
    assert first.params["entities"]  # the formatted attempt came first
    metrics = world.adapter._metrics.send_retries.labels("telegram", "formatting")
    assert metrics._value.get() == 1


async def test_rate_limit_is_waited_out(world: World):
    fake = world.fake
    fake.rate_limit_next(retry_after=1)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await world.send(fake.dm(ALICE, "busy?"))
    [answer] = await fake.wait_sent(1, timeout=5)
    assert answer["text"] == "[wx:dm:tg.42] busy?"
    assert loop.time() - started >= 1.0
    assert len(fake.api_calls("sendMessage")) == 2


async def test_bot_removed_from_group_is_dropped_without_retries(world: World, caplog):
    fake = world.fake
    fake.forbid_chat(TEAM["id"])
    await world.send(fake.group_message(TEAM, ALICE, "@bridge_bot anyone?"))
    await world.send(fake.dm(ALICE, "still there?"))
    [answer] = await fake.wait_sent(1)
    assert answer["chat"]["id"] == 42
    await world.bridge.router.idle(2)
    assert [c.params["chat_id"] for c in fake.api_calls("sendMessage")].count(TEAM["id"]) == 1
    assert "bot was kicked" in caplog.text


async def test_network_errors_on_send_are_retried(world: World):
    fake = world.fake
    fake.fail_method("sendMessage", 502, "Bad Gateway", times=2)
    await world.send(fake.dm(ALICE, "flaky network"))
    [answer] = await fake.wait_sent(1)
    assert answer["text"] == "[wx:dm:tg.42] flaky network"
    assert world.adapter._metrics.send_retries.labels("telegram", "network")._value.get() == 2


async def test_typing_is_shown_while_the_backend_works(fake, running, openai_fake):
    openai_fake.slow_next(0.3)
    backends = {"main": {"type": "openai", "base_url": openai_fake.base_url}}
    world = await start_world(running, fake, "polling", backends=backends)
    forum = group(-1009876543210, "Forum", forum=True)
    await world.send(fake.group_message(forum, ALICE, "@bridge_bot think hard", thread_id=7))
    await fake.wait_sent(1)
    assert fake.api_calls("sendChatAction")[0].params["message_thread_id"] == 7
    kinds = [(c.method, c.params.get("action")) for c in fake.api_calls()]
    sent_at = kinds.index(("sendMessage", None))
    typing = [k for k in kinds[:sent_at] if k == ("sendChatAction", "typing")]
    assert len(typing) >= 3  # shown at once, then refreshed every typing_interval (0.05 s)
    await asyncio.sleep(0.15)  # longer than two intervals: a leaked refresher would show up
    assert ("sendChatAction", "typing") not in [
        (c.method, c.params.get("action")) for c in fake.api_calls()
    ][sent_at:]


async def test_long_answer_arrives_in_order_within_telegram_limits(fake, running, openai_fake):
    paragraph = "Grüße 👋🏽 from the long answer, with emoji 🎉 everywhere. " * 10
    long = "\n\n".join(f"{n:02d} {paragraph}" for n in range(12))
    assert len(long) > 6000
    openai_fake.reply = lambda body, headers: long
    backends = {"main": {"type": "openai", "base_url": openai_fake.base_url}}
    world = await start_world(running, fake, "polling", backends=backends)
    await world.send(fake.dm(ALICE, "tell me everything"))
    sent = await fake.wait_sent(2)
    await world.bridge.router.idle(2)
    texts = [m["text"] for m in fake.sent]
    assert len(texts) == 2
    assert all(utf16_len(t) <= 4096 for t in texts)
    assert texts[0].startswith("00 ") and texts[1].rstrip().endswith("everywhere.")
    joined = "\n\n".join(t.strip() for t in texts)
    assert joined == long.strip().replace(" \n\n", "\n\n")
    assert "👋🏽" in texts[1] and "\ufffd" not in joined
    assert sent


def with_photo(update: dict) -> dict:
    message = dict(update["message"])
    message.pop("text", None)
    message.pop("entities", None)
    message["photo"] = [{"file_id": "p1", "file_unique_id": "u1", "width": 90, "height": 90}]
    message["caption"] = "what is in this picture?"
    return {"message": message}


async def test_a_photo_gets_a_short_reply_saying_why(world: World):
    fake = world.fake
    await world.send(with_photo(fake.dm(ALICE, "-")))
    [answer] = await fake.wait_sent(1)
    assert answer["text"] == "I can only read text, so I can't take a photo. Please ask in words."
    await world.send(fake.group_message(TEAM, ALICE, "@bridge_bot hi"))
    [_, first] = await fake.wait_sent(2)
    not_for_us = with_photo(fake.group_message(TEAM, BOB, "-"))
    to_the_bot = with_photo(fake.group_message(TEAM, ALICE, "-", reply_to=first))
    await world.send(not_for_us, to_the_bot)
    answers = await fake.wait_sent(3)
    assert "can't take a photo" in answers[2]["text"]
    assert answers[2]["reply_to"] == to_the_bot["message"]["message_id"]
    await world.send(fake.dm(ALICE, "still there?"))
    assert (await fake.wait_sent(4))[3]["text"] == "[wx:dm:tg.42] still there?"
    assert len(fake.sent) == 4  # Bob's photo, not addressed to the bot, got nothing


async def test_a_ten_megabyte_answer_arrives_as_a_few_messages_and_the_loop_keeps_going(
    fake, running
):
    from bench.loop_stall import LoopWatch
    from bridge.text import CUT_NOTE
    from tests.core.test_text import TEN_MB
    from tests.fakes.openai_api import FakeOpenAI

    async with FakeOpenAI(reply=lambda body, headers: TEN_MB) as llm:
        backend = {"type": "openai", "base_url": llm.base_url, "max_retries": 0}
        world = await start_world(running, fake, "polling", backends={"main": backend})
        async with LoopWatch() as watch:
            await world.send(fake.dm(ALICE, "write me a novel"))
            await fake.wait_for(
                lambda calls: fake.texts() and CUT_NOTE[:20] in fake.texts()[-1], 30
            )
    texts = fake.texts()
    assert 5 <= len(texts) <= 7  # 20,000 characters in 4,096-unit messages, not 2,444 of them
    assert texts[-1].endswith(CUT_NOTE.format(limit=20000))
    # The fake LLM and Bot API share this loop (encoding 10 MB of JSON is one step); generous.
    assert watch.longest < 0.25, f"the loop stalled for {watch.longest * 1000:.0f} ms"
