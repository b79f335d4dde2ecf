"""Streamed answers on Discord, through discord.py against the fake REST API and gateway, with the
fake OpenAI server writing a few characters at a time. Alice's answers stream; Bob's come whole
from the same server, so a scene can hold one against the other."""

from __future__ import annotations

import itertools

import pytest

from adapters.discord import DiscordAdapter
from bridge.metrics import Metrics
from bridge.types import Outbound
from tests.adapters.streaming_world import MARKDOWN, routed_config, writing_model
from tests.adapters.test_discord import discord_section, posts
from tests.fakes.base import eventually
from tests.fakes.discord_gateway import ALICE, BOB, BOT_ID, FakeDiscord


@pytest.fixture
async def fake():
    async with FakeDiscord() as server:
        # discord.py holds the edit that empties a bucket until it resets: keep the wait short.
        server.edit_window = 1.0
        yield server


@pytest.fixture
async def llm():
    async with writing_model() as server:
        yield server


async def start(running, fake, llm, **streaming):
    config = routed_config(llm, "discord", discord_section(fake), str(ALICE), **streaming)
    bridge = await running(config, DiscordAdapter(config.adapters.discord, Metrics()))
    return bridge


def contents(fake: FakeDiscord, channel: int) -> list[str]:
    return [p["content"] for p in fake.posted if int(p["channel_id"]) == channel]


async def test_a_dm_answer_shows_early_and_ends_as_the_whole_answer(fake, llm, running):
    await start(running, fake, llm)
    await fake.say("plan please", dm=True)
    await eventually(lambda: llm.finished and contents(fake, fake.dm_channel(ALICE)) == [MARKDOWN], 20)
    [message] = [p for p in fake.posted]
    assert fake.posted_at[message["id"]] < llm.finished[0]  # visible while the model wrote
    assert fake.edits and all(e["id"] == message["id"] for e in fake.edits)
    await fake.say("plan please", dm=True, author=BOB)
    await eventually(lambda: contents(fake, fake.dm_channel(BOB)), 20)
    assert contents(fake, fake.dm_channel(BOB)) == contents(fake, fake.dm_channel(ALICE))


async def test_in_a_guild_the_growing_message_replies_to_the_question(fake, llm, running):
    await start(running, fake, llm, groups=True)
    asked = await fake.say(f"<@{BOT_ID}> plan please")
    await eventually(lambda: llm.finished and contents(fake, fake.channel_id) == [MARKDOWN], 20)
    [message] = await posts(fake, 1)
    assert message["message_reference"]["message_id"] == asked["id"]
    assert message["allowed_mentions"]["parse"] == []


async def test_an_empty_edit_bucket_skips_updates_instead_of_hitting_429(fake, llm, running):
    fake.edit_limit = 2
    fake.edit_window = 1.0
    answer = "Words keep coming, one after another. " * 10
    llm.reply = lambda body, headers: answer
    llm.stream.delay = 0.05  # 2.5 s of writing: updates are due far more often than 2 a second
    bridge = await start(running, fake, llm)
    await fake.say("plan please", dm=True)
    await eventually(lambda: llm.finished and contents(fake, fake.dm_channel(ALICE)) == [answer.strip()], 20)
    skipped = bridge.metrics.registry.get_sample_value(
        "botbridge_stream_updates_total", {"platform": "discord", "outcome": "rate_limited"}
    )
    assert skipped and skipped >= 1  # the headers said wait, so the bridge waited
    assert fake.edits_refused == 0


async def test_a_429_on_an_edit_is_waited_out_and_the_text_is_complete(fake, llm, running):
    await start(running, fake, llm)
    channel = fake.dm_channel(ALICE)
    fake.rate_limit_next(0.5, path=f"/api/v10/channels/{channel}/messages/")
    await fake.say("plan please", dm=True)
    await eventually(lambda: llm.finished and contents(fake, channel) == [MARKDOWN], 20)
    assert len(fake.posted) == 1


async def test_ten_thousand_characters_end_as_ordered_parts_never_edited_again(fake, llm, running):
    long = "\n\n".join(f"Paragraph {i}: " + "lorem ipsum dolor sit amet " * 12 for i in range(30))
    llm.reply = lambda body, headers: long
    llm.stream.chunk = 100
    llm.stream.delay = 0.005
    await start(running, fake, llm)
    await fake.say("long", dm=True)
    await fake.say("long", dm=True, author=BOB)
    mine, bobs = fake.dm_channel(ALICE), fake.dm_channel(BOB)
    await eventually(lambda: sum(map(len, contents(fake, mine))) > 10_000
                     and sum(map(len, contents(fake, bobs))) > 10_000, 30)  # fmt: skip
    assert contents(fake, mine) == contents(fake, bobs)
    assert len(contents(fake, mine)) >= 6 and all(len(c) <= 2000 for c in contents(fake, mine))
    # A message is never edited once the next one exists.
    ids = [p["id"] for p in fake.posted if int(p["channel_id"]) == mine]
    for earlier, later in itertools.pairwise(ids):
        assert all(e["at"] <= fake.posted_at[later] for e in fake.edits if e["id"] == earlier)


async def test_think_never_appears_in_any_message_or_edit(fake, llm, running):
    llm.reply = lambda body, headers: "<think>the SECRET plan</think>" + MARKDOWN
    llm.stream.chunk = 3
    await start(running, fake, llm, min_chars=1)
    await fake.say("plan please", dm=True)
    await eventually(lambda: llm.finished and contents(fake, fake.dm_channel(ALICE)) == [MARKDOWN], 20)
    seen = [e["content"] for e in fake.edits] + contents(fake, fake.dm_channel(ALICE))
    assert not [t for t in seen if "SECRET" in t or "think" in t.lower()]


async def test_a_part_replacing_a_message_that_is_gone_is_posted_anew(fake, llm, running):
    """Finishing a stream a crash cut short: the growing message was deleted meanwhile."""
    bridge = await start(running, fake, llm)
    [adapter] = bridge.adapters
    channel = str(fake.dm_channel(ALICE))
    first = await adapter.send(Outbound("discord", channel, "the answer, whole", edit="404404"))
    assert contents(fake, int(channel)) == ["the answer, whole"]
    again = await adapter.send(Outbound("discord", channel, "the answer, edited", edit=first))
    assert again == first and contents(fake, int(channel)) == ["the answer, edited"]
