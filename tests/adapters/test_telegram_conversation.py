"""Telegram conversation features end to end: the fake Bot API ⇄ python-telegram-bot ⇄ the
adapter ⇄ a real Bridge ⇄ the fake OpenAI server. What the backend received is read from the fake
server's request bodies; what people see, from the messages the bot posted.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest

from adapters.telegram import TelegramAdapter
from bridge.metrics import Metrics
from tests.adapters.telegram_world import telegram_section
from tests.conftest import conversation_config
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.pictures import PDF, PNG, big_png
from tests.fakes.telegram_api import FakeTelegram, group, user

ALICE = user(42, "Alice")
BOB = user(43, "Bob", username="bob")
TEAM = group(-1001234567890, "Team")


@pytest.fixture
async def fake():
    async with FakeTelegram() as server:
        yield server


async def start(running, fake: FakeTelegram, openai: FakeOpenAI, bridge=None, **backend: Any):
    config = conversation_config(openai, {"telegram": telegram_section(fake)}, bridge, **backend)
    assert config.adapters.telegram is not None
    await running(config, TelegramAdapter(config.adapters.telegram, Metrics()))


# ------------------------------------------------------------------------------ the quoted message


async def test_a_reply_to_bobs_message_reaches_the_backend_with_bobs_text_marked(
    fake, running, openai_fake
):
    await start(running, fake, openai_fake)
    bobs = fake.group_message(TEAM, BOB, "The deploy is on Friday, after the freeze.")
    await fake.push(bobs)
    await fake.push(
        fake.group_message(TEAM, ALICE, "@bridge_bot is that right?", reply_to=bobs["message"])
    )
    [answer] = await fake.wait_sent(1)
    expected = "[In reply to Bob: The deploy is on Friday, after the freeze.]\nis that right?"
    assert openai_fake.asked() == [expected]
    assert answer["text"] == f"echo: {expected}"


async def test_only_the_part_alice_quoted_is_passed_on(fake, running, openai_fake):
    await start(running, fake, openai_fake)
    bobs = fake.group_message(TEAM, BOB, "Lunch at noon. The deploy is on Friday.")
    await fake.push(
        fake.group_message(
            TEAM, ALICE, "@bridge_bot sure?", reply_to=bobs["message"], quote="deploy is on Friday"
        )
    )
    await fake.wait_sent(1)
    assert openai_fake.asked() == ["[In reply to Bob: deploy is on Friday]\nsure?"]


async def test_a_reply_to_the_bots_answer_is_not_repeated_to_a_backend_keeping_history(
    fake, running, openai_fake
):
    await start(running, fake, openai_fake)  # session: bridge, the bridge keeps the history
    await fake.push(fake.dm(ALICE, "name a colour"))
    [first] = await fake.wait_sent(1)
    await fake.push(fake.dm(ALICE, "another one?", reply_to=first))
    await fake.wait_sent(2)
    second = openai_fake.calls_to("/v1/chat/completions")[1].json["messages"]
    assert second == [
        {"role": "user", "content": "name a colour"},
        {"role": "assistant", "content": "echo: name a colour"},
        {"role": "user", "content": "another one?"},
    ]


async def test_alices_own_question_is_not_repeated_to_her_session_but_is_told_to_bobs(
    fake, running, openai_fake
):
    await start(running, fake, openai_fake)  # per-person sessions, history kept by the bridge
    question = fake.group_message(TEAM, ALICE, "@bridge_bot name a colour")
    await fake.push(question)
    await fake.wait_sent(1)
    await fake.push(fake.group_message(TEAM, ALICE, "@bridge_bot another?", reply_to=question["message"]))
    await fake.wait_sent(2)
    await fake.push(fake.group_message(TEAM, BOB, "@bridge_bot and you?", reply_to=question["message"]))
    await fake.wait_sent(3)
    assert openai_fake.asked() == [
        "name a colour",
        "another?",
        "[In reply to Alice: name a colour]\nand you?",  # her mention of the bot left out
    ]


async def test_a_quote_from_another_chat_names_its_author(fake, running, openai_fake):
    await start(running, fake, openai_fake)
    update = fake.dm(ALICE, "is this true?")
    update["message"]["quote"] = {"text": "Cats can see in the dark.", "position": 0}
    update["message"]["external_reply"] = {
        "origin": {"type": "user", "date": 1700000000, "sender_user": BOB}
    }
    await fake.push(update)
    await fake.wait_sent(1)
    assert openai_fake.asked() == ["[In reply to Bob: Cats can see in the dark.]\nis this true?"]


async def test_a_long_quote_is_cut_at_a_word_within_quote_max_chars(fake, running, openai_fake):
    await start(running, fake, openai_fake, bridge={"quote_max_chars": 60})
    long = "First sentence is short. " + "Then it goes on and on " * 20
    bobs = fake.group_message(TEAM, BOB, long)
    await fake.push(fake.group_message(TEAM, ALICE, "@bridge_bot tl;dr?", reply_to=bobs["message"]))
    await fake.wait_sent(1)
    [content] = openai_fake.asked()
    quoted = "First sentence is short. Then it goes on and on Then it …"
    assert len(quoted) <= 60
    assert content == f"[In reply to Bob: {quoted}]\ntl;dr?"


async def test_quote_context_false_sends_the_question_alone(fake, running, openai_fake):
    await start(running, fake, openai_fake, bridge={"quote_context": False})
    bobs = fake.group_message(TEAM, BOB, "The deploy is on Friday.")
    await fake.push(fake.group_message(TEAM, ALICE, "@bridge_bot right?", reply_to=bobs["message"]))
    await fake.wait_sent(1)
    assert openai_fake.asked() == ["right?"]


# ------------------------------------------------------------------------------ pictures


async def test_a_photo_reaches_a_vision_backend_as_an_image_part(fake, running, openai_fake):
    await start(running, fake, openai_fake, vision=True)
    photo = fake.with_picture(fake.dm(ALICE, "what is in this picture?"), PNG)
    await fake.push(photo)
    [answer] = await fake.wait_sent(1)
    [content] = openai_fake.asked()
    encoded = base64.b64encode(PNG).decode()
    assert content == [
        {"type": "text", "text": "what is in this picture?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{encoded}"}},
    ]
    assert answer["text"] == f"echo: what is in this picture? [image image/png, {len(PNG)} bytes]"
    assert fake.downloads == ["photos/file-1.bin"]  # the largest size, once
    # The kept history holds a placeholder, never the picture.
    await fake.push(fake.dm(ALICE, "and now?"))
    await fake.wait_sent(2)
    history = openai_fake.calls_to("/v1/chat/completions")[1].json["messages"]
    assert history[0] == {"role": "user", "content": "[picture] what is in this picture?"}


async def test_a_captioned_photo_that_mentions_the_bot_in_a_group_is_seen(
    fake, running, openai_fake
):
    await start(running, fake, openai_fake, vision=True)
    await fake.push(fake.with_picture(fake.group_message(TEAM, ALICE, "@bridge_bot and this?"), PNG))
    await fake.push(fake.with_picture(fake.group_message(TEAM, BOB, "our cat"), PNG))  # not for us
    [answer] = await fake.wait_sent(1)
    assert answer["text"] == f"echo: and this? [image image/png, {len(PNG)} bytes]"
    assert len(openai_fake.asked()) == 1


async def test_a_backend_without_vision_keeps_the_polite_refusal(fake, running, openai_fake):
    await start(running, fake, openai_fake)
    await fake.push(fake.with_picture(fake.dm(ALICE, "what is this?"), PNG))
    [answer] = await fake.wait_sent(1)
    assert answer["text"] == "I can only read text, so I can't take a photo. Please ask in words."
    assert fake.api_calls("getFile") == [] and fake.downloads == []
    assert openai_fake.calls == []


async def test_an_oversized_picture_gets_a_clear_message_and_is_not_downloaded(
    fake, running, openai_fake
):
    await start(running, fake, openai_fake, bridge={"max_image_bytes": 1_000_000}, vision=True)
    await fake.push(fake.with_picture(fake.dm(ALICE, "look"), big_png(2_500_000)))
    [answer] = await fake.wait_sent(1)
    assert answer["text"] == (
        "That picture is 2.5 MB; I can take pictures up to 1 MB. Please send a smaller one."
    )
    assert fake.api_calls("getFile") == [] and fake.downloads == []
    assert openai_fake.calls == []


async def test_a_size_stated_only_by_getfile_is_checked_before_the_download(
    fake, running, openai_fake
):
    await start(running, fake, openai_fake, bridge={"max_image_bytes": 1_000_000}, vision=True)
    photo = fake.with_picture(fake.dm(ALICE, "look"), big_png(2_000_000), stated_size=0)
    fake.files["file-1"]["file_size"] = 2_000_000  # getFile states it, the message did not
    await fake.push(photo)
    [answer] = await fake.wait_sent(1)
    assert "That picture is 2 MB" in answer["text"]
    assert len(fake.api_calls("getFile")) == 1 and fake.downloads == []


async def test_files_that_are_not_accepted_pictures_are_refused(fake, running, openai_fake):
    await start(running, fake, openai_fake, vision=True)
    await fake.push(fake.with_picture(fake.dm(ALICE, "a tiff"), PNG, document="image/tiff"))
    await fake.push(fake.with_picture(fake.dm(ALICE, "a png?"), PDF, document="image/png"))
    answers = await fake.wait_sent(2)
    refusal = "I can look at JPEG, PNG, WebP and GIF pictures; that file is none of them."
    assert [a["text"] for a in answers] == [refusal, refusal]
    assert fake.downloads == ["documents/file-2.bin"]  # the TIFF was refused unread
    assert openai_fake.calls == []
