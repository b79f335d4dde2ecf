"""The Telegram adapter's rules in isolation: who is addressed and what text the LLM sees (UTF-16
offsets included), Markdown that outgrows one message, and the per-group send pace."""

from __future__ import annotations

import asyncio

import pytest
from telegram import Bot, Update, User

from adapters._telegram_inbound import strip_spans, to_inbound
from adapters._telegram_send import Sender, render
from bridge.config import parse_config
from bridge.metrics import Metrics
from bridge.types import Addressed, ChatKind, Outbound
from tests.adapters.telegram_world import telegram_section
from tests.fakes.telegram_api import FakeTelegram, group, user, utf16_len

ME = User(7000001, "Bridge", is_bot=True, username="bridge_bot", can_read_all_group_messages=False)
ALICE = user(42, "Alice")
TEAM = group(-1001234567890, "Team")
fake_builder = FakeTelegram.__new__(FakeTelegram)  # only its message builders, no server
fake_builder.chats = {}
fake_builder._message_ids = iter(range(1, 10_000))


def inbound(update: dict, me: User = ME, update_id: int = 5):
    return to_inbound(Update.de_json({"update_id": update_id, **update}, None), me)


def group_text(text: str, **kwargs):
    return inbound(FakeTelegram.message(fake_builder, TEAM, ALICE, text, **kwargs))


def test_dm_inbound_fields():
    found = inbound(FakeTelegram.dm(fake_builder, ALICE, "hi"), update_id=812)
    assert found is not None
    assert (found.platform, found.chat_id, found.sender_id, found.kind) == (
        "telegram",
        "42",
        "42",
        ChatKind.DM,
    )
    assert found.event_id == "7000001.812" and found.addressed is Addressed.DM
    assert found.sender_name == "Alice" and found.text == "hi"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("@bridge_bot hello", "hello"),
        ("@BRIDGE_BOT, hello", "hello"),
        ("so @bridge_bot what now", "so what now"),
        ("🎉🎉 @bridge_bot 👋🏽 hi", "🎉🎉 👋🏽 hi"),  # offsets past astral characters
        ("ask @bridge_bot", "ask"),
    ],
)
def test_mentions_are_stripped(text: str, expected: str):
    found = group_text(text)
    assert found is not None and found.addressed is Addressed.MENTION
    assert found.text == expected


def test_text_mention_of_the_bot_addresses_it():
    entity = {
        "type": "text_mention",
        "offset": 4,
        "length": 6,
        "user": {"id": ME.id, "is_bot": True, "first_name": "Bridge"},
    }
    found = group_text("Hey Bridge, summarise", entities=[entity])
    assert found is not None and found.addressed is Addressed.MENTION
    assert found.text == "Hey , summarise"


def test_mention_of_someone_else_is_not_for_the_bot():
    found = group_text("@bridge_bot_fan look at this")
    assert found is not None and found.addressed is Addressed.NOT


def test_bare_command_depends_on_privacy_mode():
    assert group_text("/help").addressed is Addressed.COMMAND
    nosy = User(
        ME.id, "Bridge", is_bot=True, username="bridge_bot", can_read_all_group_messages=True
    )
    update = FakeTelegram.message(fake_builder, TEAM, ALICE, "/help")
    assert inbound(update, me=nosy).addressed is Addressed.NOT
    found = group_text("/help@Bridge_Bot please")
    assert found.addressed is Addressed.COMMAND and found.text == "/help please"


def test_forum_topic_root_is_not_a_reply_to_the_bot():
    root = {
        "message_id": 1,
        "date": 0,
        "chat": TEAM,
        "from": {"id": ME.id, "is_bot": True, "first_name": "Bridge"},
        "forum_topic_created": {"name": "Topic", "icon_color": 1},
    }
    found = group_text("hello topic", reply_to=root, thread_id=1)
    assert found.addressed is Addressed.NOT and found.thread_id == "1"


def test_service_messages_and_channel_posts_are_not_delivered():
    service = {
        "message": {
            "message_id": 3,
            "date": 0,
            "chat": TEAM,
            "from": ALICE,
            "new_chat_members": [ALICE],
        }
    }
    channel = {
        "channel_post": {
            "message_id": 4,
            "date": 0,
            "text": "news",
            "chat": {"id": -100777, "type": "channel"},
        }
    }
    assert inbound(service) is None
    assert inbound(channel) is None


def test_strip_spans_keeps_other_text_intact():
    assert strip_spans("a @b c", [(2, 2)]) == "a c"
    assert strip_spans("@b", [(0, 2)]) == ""


def test_render_resplits_when_converted_text_outgrows_a_message():
    markdown = "\n".join(f"# Heading {n:04d} with some words" for n in range(130))
    assert utf16_len(markdown) <= 4096
    chunks = render(markdown)
    assert len(chunks) == 2  # each heading gained a "📌 " prefix
    assert all(utf16_len(text) <= 4096 for text, _ in chunks)
    assert all(
        e.offset + e.length <= utf16_len(text) for text, entities in chunks for e in entities
    )


async def test_group_pace_holds_a_group_but_not_other_chats():
    async with FakeTelegram() as fake:
        fake.chats[TEAM["id"]] = TEAM
        fake.chats[42] = {"id": 42, "type": "private", "first_name": "Alice"}
        section = telegram_section(fake, group_messages_per_minute=2)
        config = parse_config({"adapters": {"telegram": section}}, {}).adapters.telegram
        async with Bot(fake.token, base_url=fake.base_url) as bot:
            sender = Sender(bot, config, Metrics())
            to_group = [
                asyncio.create_task(sender.send(Outbound("telegram", str(TEAM["id"]), f"g{n}")))
                for n in range(3)
            ]
            await sender.send(Outbound("telegram", "42", "dm goes straight through"))
            await fake.wait_for(lambda calls: len(fake.sent) >= 3)
            await asyncio.sleep(0.2)
            assert sorted(fake.texts()) == ["dm goes straight through", "g0", "g1"]
            assert not to_group[2].done()  # the third waits for the group's pace (30 s)
            to_group[2].cancel()
            await asyncio.gather(*to_group, return_exceptions=True)
