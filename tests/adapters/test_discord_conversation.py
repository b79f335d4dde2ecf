"""Discord conversation features end to end: the fake gateway and REST API (and its CDN) ⇄ the
real discord.py client ⇄ the adapter ⇄ a real Bridge ⇄ the fake OpenAI server."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from adapters.discord import DiscordAdapter
from bridge.metrics import Metrics
from tests.adapters.test_discord import discord_section
from tests.conftest import conversation_config
from tests.fakes.base import eventually
from tests.fakes.discord_gateway import ALICE, API, BOB, BOT_ID, FakeDiscord
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.pictures import JPEG, PNG, big_png


@pytest.fixture
async def fake() -> Any:
    async with FakeDiscord() as server:
        yield server


async def start(running, fake: FakeDiscord, openai: FakeOpenAI, bridge=None, **backend: Any):
    config = conversation_config(openai, {"discord": discord_section(fake)}, bridge, **backend)
    await running(config, DiscordAdapter(config.adapters.discord, Metrics()))


async def posts(fake: FakeDiscord, count: int) -> list[str]:
    await eventually(lambda: len(fake.posted) >= count, 5)
    return [p["content"] for p in fake.posted]


async def test_a_reply_to_bobs_message_reaches_the_backend_with_bobs_text_marked(
    fake, running, openai_fake
):
    await start(running, fake, openai_fake)
    bobs = await fake.say("The deploy is on Friday.", author=BOB)
    await fake.say(f"<@{BOT_ID}> is that right?", author=ALICE, reply_to=bobs)
    [answer] = await posts(fake, 1)
    assert openai_fake.asked() == ["[In reply to Bob: The deploy is on Friday.]\nis that right?"]
    assert answer.startswith("echo: [In reply to Bob:")


async def test_a_replied_to_message_the_gateway_left_out_is_fetched_over_rest(
    fake, running, openai_fake
):
    await start(running, fake, openai_fake)
    # Bob spoke before the bot connected: the client has never seen his message.
    bobs = await fake.say("Standup moves to 10:30.", author=BOB, seen=False)
    await fake.say(f"<@{BOT_ID}> when?", author=ALICE, reply_to=bobs, resolved=False)
    await posts(fake, 1)
    assert openai_fake.asked() == ["[In reply to Bob: Standup moves to 10:30.]\nwhen?"]
    path = f"{API}/channels/{fake.channel_id}/messages/{bobs['id']}"
    assert len(fake.calls_to(path, "GET")) == 1


async def test_an_unresolved_reply_to_the_bot_is_recognised_by_fetching_it(
    fake, running, openai_fake
):
    await start(running, fake, openai_fake)  # the bridge keeps the history
    # One of the bot's answers from before a restart, and a reply to it that pings the bot but
    # arrives without it: only a fetch tells that the reply is for the bot.
    old_answer = await fake.say("Blue.", author=BOT_ID, seen=False)
    await fake.say("another one?", author=ALICE, reply_to=old_answer, resolved=False)
    await posts(fake, 1)
    assert openai_fake.asked() == ["another one?"]  # the bot's own answer is not repeated
    path = f"{API}/channels/{fake.channel_id}/messages/{old_answer['id']}"
    assert len(fake.calls_to(path, "GET")) == 1
    # Replies that do not ping the bot are not worth a fetch.
    await fake.say("nice", author=BOB, reply_to=await fake.say("hi", author=ALICE), resolved=False)
    await fake.say(f"<@{BOT_ID}> done", author=ALICE)
    await posts(fake, 2)
    assert [c.method for c in fake.calls if "/messages/" in c.path] == ["GET"]


async def test_a_picture_reaches_a_vision_backend_as_an_image_part(fake, running, openai_fake):
    await start(running, fake, openai_fake, vision=True)
    await fake.say(
        "what is this?", dm=True, attachment="cat.jpg", data=JPEG, content_type="image/jpeg"
    )
    [answer] = await posts(fake, 1)
    [content] = openai_fake.asked()
    url = f"data:image/jpeg;base64,{base64.b64encode(JPEG).decode()}"
    assert content == [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": url}},
    ]
    assert answer == f"echo: what is this? [image image/jpeg, {len(JPEG)} bytes]"
    assert len(fake.downloads) == 1


async def test_a_picture_gets_the_polite_refusal_from_a_backend_without_vision(
    fake, running, openai_fake
):
    await start(running, fake, openai_fake)
    await fake.say("what is this?", dm=True, attachment="cat.png", data=PNG, content_type="image/png")
    [answer] = await posts(fake, 1)
    assert answer == "I can only read text, so I can't take a picture. Please ask in words."
    assert fake.downloads == [] and openai_fake.calls == []


async def test_an_oversized_picture_gets_a_clear_message_and_is_not_downloaded(
    fake, running, openai_fake
):
    await start(running, fake, openai_fake, bridge={"max_image_bytes": 1_000_000}, vision=True)
    await fake.say(
        "look", dm=True, attachment="huge.png", data=big_png(3_000_000), content_type="image/png"
    )
    [answer] = await posts(fake, 1)
    assert answer == (
        "That picture is 3 MB; I can take pictures up to 1 MB. Please send a smaller one."
    )
    assert fake.downloads == [] and openai_fake.calls == []


async def test_alices_own_question_is_not_repeated_to_her_session_but_is_told_to_bobs(
    fake, running, openai_fake
):
    await start(running, fake, openai_fake)  # per-person sessions, history kept by the bridge
    question = await fake.say(f"<@{BOT_ID}> name a colour", author=ALICE)
    await posts(fake, 1)
    await fake.say(f"<@{BOT_ID}> another?", author=ALICE, reply_to=question)
    await posts(fake, 2)
    await fake.say(f"<@{BOT_ID}> and you?", author=BOB, reply_to=question)
    await posts(fake, 3)
    assert openai_fake.asked() == [
        "name a colour",
        "another?",
        "[In reply to Alice: name a colour]\nand you?",
    ]
